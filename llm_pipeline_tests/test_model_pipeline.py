"""End to end: the whole graph, from raw text to a promoted model and its report."""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
from dagster import AssetKey

from llm_pipeline.cli import main
from llm_pipeline.definitions import defs
from llm_pipeline.lm.settings import TrainedModelSettings
from llm_pipeline.lm.store.checkpoint import load_model, read_config
from llm_pipeline.lm.store.folders import CURRENT, LATEST, read_pointer, training_state_root
from llm_pipeline.lm.store.history import model_history
from llm_pipeline.lm.train.loop import train
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline.report.plots import history_points
from llm_pipeline.text.split.validation_keys import VALIDATION_KEYS_FILE, read_validation_keys
from llm_pipeline.tokens.shards import read_meta
from llm_pipeline_tests.test_pipeline import FAST, check_results, failures

TINY_MODEL = {
    "n_layer": 1,
    "n_head": 2,
    "n_embd": 32,
    "block_size": 32,
    "batch_size": 8,
    "max_steps": 80,
    "max_seconds": 0,
    "learning_rate": 5e-3,
    "warmup_steps": 5,
    "eval_interval": 40,
    "eval_batches": 4,
}
REPORT = {"max_new_tokens": 8, "prompts": ["The model"]}


GRAMMAR = (
    ["the model", "a pipeline", "the tokenizer", "every stage", "the trainer"],
    ["reads", "cleans", "writes", "checks", "learns"],
    ["the corpus", "each document", "the shards", "a report", "the tokens"],
)
# The same shape in other words: documents that are no near-copies of GRAMMAR's.
OTHER_GRAMMAR = (
    ["a river", "the old town", "her brother", "some birds", "that morning"],
    ["follows", "crosses", "remembers", "paints", "hears"],
    ["the bridge", "a quiet song", "the harbour", "two lanterns", "the hills"],
)


def make_structured_corpus(
    folder: Path,
    n_docs: int = 150,
    seed: int = 0,
    name: str = "grammar.jsonl",
    grammar: tuple[list[str], list[str], list[str]] = GRAMMAR,
) -> None:
    """Text with learnable structure (a small grammar), so context beats word frequencies."""
    rng = random.Random(seed)
    subjects, verbs, objects = grammar
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for _ in range(n_docs):
        sentences = [
            f"{rng.choice(subjects).capitalize()} {rng.choice(verbs)} {rng.choice(objects)}, "
            f"then it {rng.choice(verbs)} {rng.choice(objects)} again."
            for _ in range(rng.randint(3, 8))
        ]
        lines.append(json.dumps({"text": " ".join(sentences)}))
    (folder / name).write_text("\n".join(lines) + "\n")


def run_graph(instance, corpus: str, model: dict, report: dict):
    job = defs.resolve_job_def("corpus_pipeline_job")
    return job.execute_in_process(
        instance=instance,
        partition_key=corpus,
        run_config={
            "ops": {
                **FAST,
                "trained_model": {"config": model},
                "evaluation_report": {"config": report},
            }
        },
        raise_on_error=False,
    )


def test_whole_graph_trains_reports_and_promotes_only_no_worse_models(
    tmp_path: Path, data_root: Path, instance
) -> None:
    make_structured_corpus(data_root / "raw" / "tiny")
    heldout = data_root / "heldout.txt"  # eval files live under the data root
    heldout.write_text("The pipeline cleans documents and trains a tokenizer.\n")
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["tiny"])
    first = run_graph(instance, "tiny", TINY_MODEL, {**REPORT, "eval_files": [str(heldout)]})
    assert first.success, failures(first)
    checks = check_results(first)
    assert checks["losses_finite"] and checks["beats_unigram_baseline"]
    assert checks["checkpoint_loads_and_generates"]
    models = data_root.parent / "models" / "tiny"
    run_id = first.run_id
    assert read_pointer("tiny", LATEST) == read_pointer("tiny", CURRENT) == run_id
    folder = models / run_id
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "metrics.jsonl",
        "optimizer.safetensors",
        "report.md",
        "report.html",
        "loss.png",
        "lr.png",
        "cleaning_funnel.png",
    } <= {p.name for p in folder.iterdir()}
    config = read_config(folder)
    assert config.data.raw_fingerprint
    assert config.training["max_steps"] == 80
    assert config.summary.val_bits_per_byte < config.summary.unigram_bits_per_byte
    report = first.asset_materializations_for_node("evaluation_report")[0].metadata
    assert report["promoted"].value is True
    assert "eval_bpb_heldout.txt" in report
    assert "data:image/png;base64," in report["report"].value
    markdown = (folder / "report.md").read_text()
    assert "heldout.txt" in markdown and "promoted" in markdown
    assert "## Cleaning funnel" in markdown  # read from the cleaned corpus's cleaning.json
    assert load_model(folder).config.n_embd == 32

    trained = first.asset_materializations_for_node("trained_model")[0].metadata
    assert 0 < trained["mfu"].value < 1 and trained["measured_peak_gflops"].value > 0
    assert trained["resumed_from_step"].value == 0

    # A weaker challenger (fewer steps, still past the unigram check) is evaluated against the
    # champion on the same validation text and not promoted. Its training was interrupted
    # before (a state left at step 10): the asset resumes it and then discards the state.
    challenger = TrainedModelSettings.resolve(
        {
            **TINY_MODEL,
            "max_steps": 30,
            "vocab_size": read_meta(data_root / "tokens" / "tiny")["vocab_size"],
        }
    )
    shards = data_root / "tokens" / "tiny"
    steps: list[int] = []
    interrupted = train(
        challenger,
        challenger,
        shards,
        progress=lambda row: steps.append(row["step"]),
        should_stop=lambda: bool(steps) and steps[-1] >= 10,
        state_root=training_state_root("tiny"),
    )
    assert interrupted.stop_reason == "stopped" and Path(interrupted.state_path).is_dir()
    second = run_graph(instance, "tiny", {**TINY_MODEL, "max_steps": 30}, REPORT)
    assert second.success, failures(second)
    trained = second.asset_materializations_for_node("trained_model")[0].metadata
    assert trained["resumed_from_step"].value == interrupted.steps == 20  # first log row >= 10
    assert trained["steps"].value == 30
    assert not Path(interrupted.state_path).exists()
    report = second.asset_materializations_for_node("evaluation_report")[0].metadata
    assert report["promoted"].value is False
    assert report["champion_run"].value == run_id
    assert report["challenger_bits_per_byte"].value > report["champion_bits_per_byte"].value
    assert read_pointer("tiny", CURRENT) == run_id
    assert read_pointer("tiny", LATEST) == second.run_id
    assert "not promoted" in (models / second.run_id / "report.md").read_text()
    # The model history: one point per model after two runs, the champion marked.
    history = model_history("tiny")
    assert [r.run_id for r in history] == [run_id, second.run_id]
    assert len(history_points([vars(r) for r in history])) == 2
    markdown = (models / second.run_id / "report.md").read_text()
    assert "## Model history" in markdown and "](model_history.png)" in markdown
    assert f"{run_id} (champion)" in markdown and f"{second.run_id} (this run)" in markdown
    assert (models / second.run_id / "model_history.png").is_file()
    for asset in ("trained_model", "evaluation_report"):
        assert "tiny" in instance.get_materialized_partitions(AssetKey(asset))


def test_a_grown_corpus_is_compared_on_the_validation_documents_both_splits_hold(
    data_root: Path, instance
) -> None:
    make_structured_corpus(data_root / "raw" / "grow")
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["grow"])
    first = run_graph(instance, "grow", TINY_MODEL, REPORT)
    assert first.success, failures(first)
    # More documents: a new validation set, which keeps some of the old one's documents.
    make_structured_corpus(data_root / "raw" / "grow", 150, 1, "more.jsonl", OTHER_GRAMMAR)
    second = run_graph(instance, "grow", TINY_MODEL, REPORT)
    assert second.success, failures(second)
    models = data_root.parent / "models" / "grow"
    keys = []
    for result in (first, second):
        summary = read_config(models / result.run_id).summary
        file = models / result.run_id / VALIDATION_KEYS_FILE
        keys.append(read_validation_keys(file, asdict(summary.validation_set)))
    old, new = keys
    assert old is not None and new is not None and not np.array_equal(old, new)
    both = np.intersect1d(old, new)
    report = second.asset_materializations_for_node("evaluation_report")[0].metadata
    compared_on = report["compared_on"].value
    match = re.match(r"(\d+) validation documents of both splits", compared_on)
    assert match, (compared_on, len(old), len(new), len(both))
    assert 0 < int(match.group(1)) <= len(both)
    assert report["like_for_like"].value is True
    assert report["champion_run"].value == first.run_id
    assert report["champion_bits_per_byte"].value > 0  # the champion was scored again
    assert "of both splits" in (models / second.run_id / "report.md").read_text()


def test_bad_model_config_fails_before_training(data_root: Path, instance) -> None:
    make_structured_corpus(data_root / "raw" / "tiny")
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["tiny"])
    result = run_graph(instance, "tiny", {**TINY_MODEL, "n_embd": 30, "n_head": 4}, REPORT)
    assert not result.success
    assert "n_embd (30) must be divisible by n_head (4)" in failures(result)[0]
    assert not (data_root.parent / "models" / "tiny").exists()


def test_cli_run_and_generate(tmp_path: Path, data_root: Path, instance, capsys) -> None:
    make_structured_corpus(tmp_path / "src")
    assert main(["corpus", "add", "cli", str(tmp_path / "src")]) == 0
    config = tmp_path / "config.yaml"
    lines = ["cleaned_corpus:", "  workers: 1", "tokenizer:", "  vocab_size: 400", "trained_model:"]
    lines += [f"  {k}: {v}" for k, v in TINY_MODEL.items()]
    lines += ["evaluation_report:", "  max_new_tokens: 4"]
    config.write_text("\n".join(lines) + "\n")
    assert main(["run", "--corpus", "cli", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "report:" in out and "report.html" in out and "bits per byte:" in out
    assert (
        main(
            [
                "generate",
                "--corpus",
                "cli",
                "--prompt",
                "The",
                "--seed",
                "1",
                "--max-new-tokens",
                "5",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert captured.out.startswith("The") and captured.out.endswith("\n")
    champion_id = read_pointer("cli", CURRENT)
    assert f"[model {champion_id} (champion)]" in captured.err
    assert re.search(r"\[\d+ tokens in [\d.]+ s, [\d,]+ tokens/s\]", captured.err), captured.err
    assert main(["generate", "--corpus", "cli", "--run", "nope", "--prompt", "x"]) == 2
    assert "no such checkpoint folder" in capsys.readouterr().err

    # The Python of docs/getting-started.md (run as written by test_docs.py), on this corpus:
    # generate after loading, and open_split with a str path.
    import torch

    from llm_pipeline.lm.model.sampling import complete, load_run
    from llm_pipeline.lm.store.folders import resolve_run
    from llm_pipeline.tokens.shards import open_split

    run = load_run(resolve_run("cli"))
    assert run.path.name == champion_id
    text = complete(run, "The", max_new_tokens=4, generator=torch.Generator().manual_seed(0))
    assert isinstance(text, str)
    assert len(open_split(str(data_root / "tokens" / "cli"), "train")) > 0
    # Finished runs leave no lock files in the corpus's models folder.
    assert not list((data_root.parent / "models" / "cli").glob(".*.lock"))
    # The corpus at a glance: all six stages and the champion's score.
    assert main(["corpus", "list"]) == 0
    listing = capsys.readouterr().out
    champion = read_config(data_root.parent / "models" / "cli" / read_pointer("cli", CURRENT))
    for stage in (
        "raw_corpus",
        "cleaned_corpus",
        "tokenizer",
        "token_shards",
        "trained_model",
        "evaluation_report",
    ):
        assert stage in listing
    assert f"champion {read_pointer('cli', CURRENT)}" in listing
    assert f"{champion.summary.val_bits_per_byte:.4f} bits/byte" in listing
    assert "raw files unchanged" in listing
    assert main(["status", "--corpus", "cli"]) == 0
    status = capsys.readouterr().out
    assert "checks: " in status and "beats_unigram_baseline passed" in status
    assert "up to date" in status
    (tmp_path / "more.txt").write_text("More text, changed after training.\n")
    assert main(["corpus", "add", "cli", str(tmp_path / "more.txt")]) == 0
    capsys.readouterr()
    assert main(["corpus", "list"]) == 0
    assert "STALE: raw files changed since" in capsys.readouterr().out
    assert main(["status", "--corpus", "cli"]) == 0
    status = capsys.readouterr().out
    assert "a rerun would redo (stale): raw_corpus, cleaned_corpus" in status

    # Without a champion, generate says so and names the model it falls back to.
    (data_root.parent / "models" / "cli" / CURRENT).unlink()
    assert main(["generate", "--corpus", "cli", "--prompt", "The", "--max-new-tokens", "2"]) == 0
    err = capsys.readouterr().err
    assert "has no champion" in err and f"latest model, {read_pointer('cli', LATEST)}" in err
