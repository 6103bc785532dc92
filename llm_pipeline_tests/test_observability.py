"""What a run says when it goes wrong, and what a corpus has had: cleaning advice, the CLI's
last lines, the model history (records, plot, table)."""

from __future__ import annotations

import os
import random
from dataclasses import asdict
from pathlib import Path

from llm_pipeline.atomic import write_json_atomic
from llm_pipeline.cli.runs import failure_summary
from llm_pipeline.lm.store.checkpoint_config import CheckpointConfig, DataInfo, TrainingSummary
from llm_pipeline.lm.store.folders import CURRENT, write_pointer
from llm_pipeline.lm.store.history import model_history, record_promotion
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline.report.content import HISTORY_IMAGE, history_rows
from llm_pipeline.report.plots import history_points, model_history_png
from llm_pipeline.report.render import render_html, render_markdown
from llm_pipeline.text.advice import cleaning_advice
from llm_pipeline.text.clean import CleaningConfig, clean_documents
from llm_pipeline_tests.conftest import make_document
from llm_pipeline_tests.test_report import assert_png, make_inputs


def play(rng: random.Random) -> str:
    """A scene: speaker names on their own lines, repeated (Gopher's line repetition fires)."""
    lines: list[str] = []
    for _ in range(30):
        lines += ["HAMLET.", "HORATIO.", "HAMLET.", make_document(rng, 12)]
    return "\n".join(lines)


def test_heavy_cleaning_names_the_filter_and_a_profile_that_keeps_the_bytes(
    tmp_path: Path,
) -> None:
    rng = random.Random(0)
    texts = [play(rng) for _ in range(30)]
    config = CleaningConfig.from_profile("docs")
    stats = clean_documents([(texts, ["scene.txt"] * len(texts))], tmp_path / "out", config)
    advice = cleaning_advice(stats, config, tmp_path / "out" / "_dropped")
    assert advice is not None and advice.step == "gopher_repetition"
    assert advice.removed_fraction > 0.5 and advice.profile not in (None, "docs")
    assert advice.kept_fraction > 0.5
    message = advice.message("docs")
    assert "'gopher_repetition'" in message and f"profile: {advice.profile}" in message


def test_light_cleaning_gives_no_advice(tmp_path: Path) -> None:
    rng = random.Random(1)
    texts = [make_document(rng, 80) for _ in range(20)]
    config = CleaningConfig.from_profile("docs")
    stats = clean_documents([(texts, ["a"] * len(texts))], tmp_path / "out", config)
    assert cleaning_advice(stats, config, tmp_path / "out" / "_dropped") is None


def test_failure_summary_names_the_step_and_the_check_reason() -> None:
    check = "validation 3.9 bits/byte is not below the unigram baseline 3.8. Try: more text."
    lines = failure_summary(
        [("trained_model", "1 blocking asset check failed: trained_model:beats_unigram_baseline")],
        {"beats_unigram_baseline": check},
    )
    assert lines == [f"FAILED trained_model: check beats_unigram_baseline failed: {check}"]
    lines = failure_summary([("raw_corpus", "corpus 'x': folder has no files\nmore")], {})
    assert lines == ["FAILED raw_corpus: corpus 'x': folder has no files"]


def fake_run(models: Path, run_id: str, bpb: float, trained_at: float) -> Path:
    folder = models / "tiny" / run_id
    folder.mkdir(parents=True)
    summary = TrainingSummary(
        run_id=run_id, corpus="tiny", steps=10, tokens_seen=1000, training_seconds=1.0,
        tokens_per_s=1000.0, stop_reason="max_steps", parameters=5000, val_loss=1.0,
        val_bits_per_byte=bpb, unigram_bits_per_byte=5.0,
    )  # fmt: skip
    config = CheckpointConfig(
        model={"architecture": "gpt"}, data=DataInfo("tiny", "abc"), summary=summary
    )
    write_json_atomic(folder / "config.json", config.to_dict())
    os.utime(folder / "config.json", (trained_at, trained_at))
    return folder


def test_history_has_one_point_per_model_after_two_runs(tmp_path: Path) -> None:
    models = tmp_path / "models"
    first = fake_run(models, "run-a", 2.5, 1_700_000_000)
    fake_run(models, "run-b", 2.7, 1_700_003_600)
    (models / "tiny" / "run-c").mkdir()  # a crashed run: no config.json, not in the history
    write_pointer("tiny", CURRENT, "run-a", models)
    record_promotion(first, {"promoted": True})
    records = model_history("tiny", models)
    assert [r.run_id for r in records] == ["run-a", "run-b"]
    assert [(r.champion, r.promoted) for r in records] == [(True, True), (False, False)]
    rows = [asdict(r) for r in records]
    assert history_points(rows) == [(1_700_000_000.0, 2.5), (1_700_003_600.0, 2.7)]
    png = model_history_png(rows, "run-b")
    assert_png(png)
    assert_png(model_history_png([], None))
    table = history_rows(rows, "run-b")
    assert [row[0] for row in table] == ["run-a (champion)", "run-b (this run)"]
    assert table[0][-2:] == ("2.5000", "yes") and table[1][2] == "gpt"

    inputs = make_inputs(models=rows, comparison={"challenger_run": "run-b"})
    markdown = render_markdown(inputs, {HISTORY_IMAGE: "model_history.png"})
    assert "## Model history" in markdown and "run-a (champion)" in markdown
    assert "](model_history.png)" in markdown
    page = render_html(inputs, {HISTORY_IMAGE: png})
    assert "<h2>Model history</h2>" in page and "run-b (this run)" in page


def test_a_removed_lock_file_still_serialises_writers(tmp_path: Path) -> None:
    import threading

    from llm_pipeline.locking import output_lock

    inside: list[int] = []
    overlaps: list[int] = []
    first_in = threading.Event()

    def writer(n: int) -> None:
        with output_lock(tmp_path, "run", remove=True):
            if inside:
                overlaps.append(n)
            inside.append(n)
            first_in.set()
            threading.Event().wait(0.05)
            inside.remove(n)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    threads[0].start()
    first_in.wait(10)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert overlaps == []
    assert list(tmp_path.iterdir()) == []  # no lock file left behind


def test_a_failed_run_ends_with_the_step_and_its_reason(
    tmp_path: Path, data_root: Path, instance, capsys
) -> None:
    from llm_pipeline.cli import main

    # `corpus add` refuses such a folder now (issue 26); one made by hand still fails the run.
    (data_root / "raw" / "bad").mkdir(parents=True)
    (data_root / "raw" / "bad" / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["bad"])
    assert main(["materialize", "--corpus", "bad"]) == 1
    captured = capsys.readouterr()
    # The root cause first, one line of advice, then what was skipped (one line, not one a step).
    cause, advice, skipped = captured.err.strip().splitlines()[-3:]
    assert cause.startswith("FAILED raw_corpus: corpus 'bad': no usable documents in 1 file(s)")
    assert advice.startswith("try: add readable files") and "corpus add bad" in advice
    assert skipped.startswith("skipped because of it: cleaned_corpus, tokenizer, token_shards")
    assert "Dependencies for step" not in captured.err
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    # The run's log came through live, as plain lines (pytest's stderr is not a terminal).
    assert "[raw_corpus] progress raw_corpus: done, 0 docs" in captured.err


def test_baseline_check_message_carries_figures_and_fixes(tmp_path: Path) -> None:
    from llm_pipeline.checks.model import _baseline_advice
    from llm_pipeline.resources import StorageResource

    storage = StorageResource(data_dir=str(tmp_path / "data"), models_dir=str(tmp_path / "m"))
    cleaned = storage.cleaned("book")
    cleaned.mkdir(parents=True)
    write_json_atomic(
        cleaned / "cleaning.json",
        {"config": {"profile": "docs"}, "stats": {"bytes_in": 1000, "bytes_out": 90}},
    )
    summary = TrainingSummary(
        run_id="r", corpus="book", steps=120, tokens_seen=4000, training_seconds=3.0,
        tokens_per_s=1.0, stop_reason="max_seconds", parameters=1, val_loss=1.0,
        val_bits_per_byte=3.9, unigram_bits_per_byte=3.8,
    )  # fmt: skip
    message = _baseline_advice(summary, storage, "book")
    assert "3.9000 bits/byte is not below the unigram baseline 3.8000" in message
    assert "120 steps" in message and "stopped by max_seconds" in message
    assert "more text" in message and "longer budget" in message
    assert "profile 'docs' removed 91% of the bytes" in message


def test_cleaned_corpus_failure_names_the_filter_and_the_profile(data_root: Path, instance) -> None:
    import json

    from llm_pipeline_tests.test_pipeline import failures, run

    rng = random.Random(2)
    folder = data_root / "raw" / "plays"
    folder.mkdir(parents=True)
    lines = [json.dumps({"text": play(rng)}) for _ in range(20)]
    (folder / "plays.jsonl").write_text("\n".join(lines) + "\n")
    result = run(instance, "plays")
    assert not result.success
    message = failures(result)[0]
    assert "no documents left after cleaning" in message
    assert "'gopher_repetition' alone removed 100%" in message and "set `cleaned_corpus:" in message
