"""Issue 26 end to end: `llm-pipeline run` redoes only what is missing or stale and says why it
skips the rest (`--from`, `--force`), and a model that fails a check still gets its report,
marked at the top, and is never promoted."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetKey, AssetRecordsFilter

from llm_pipeline.cli import main
from llm_pipeline.cli.plan import plan_run
from llm_pipeline.lm.store.checkpoint import read_config
from llm_pipeline.lm.store.folders import CURRENT, LATEST, read_pointer
from llm_pipeline.run_config import load_run_config
from llm_pipeline.stage_assets import registered_settings as stage_settings
from llm_pipeline_tests.test_model_pipeline import TINY_MODEL, make_structured_corpus

DATA_STAGES = ("raw_corpus", "cleaned_corpus", "tokenizer", "token_shards")


def write_config(path: Path, model: dict) -> str:
    lines = ["cleaned_corpus:", "  workers: 1", "tokenizer:", "  vocab_size: 400"]
    lines += ["trained_model:", *(f"  {k}: {v}" for k, v in model.items())]
    lines += ["evaluation_report:", "  max_new_tokens: 4"]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def materializations(instance, asset: str) -> int:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=["loop"]), limit=100
    )
    return len(records.records)


def test_run_redoes_only_what_is_stale_and_reports_a_model_that_failed_its_checks(
    tmp_path: Path, data_root: Path, instance, capsys
) -> None:
    make_structured_corpus(tmp_path / "src")
    assert main(["corpus", "add", "loop", str(tmp_path / "src")]) == 0
    config = write_config(tmp_path / "config.yaml", TINY_MODEL)
    assert main(["run", "--corpus", "loop", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "run  raw_corpus: never materialized" in out and "report:" in out
    champion = read_pointer("loop", CURRENT)

    # Unchanged: nothing runs, and each stage says why it is skipped.
    assert main(["run", "--corpus", "loop", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "nothing to run" in out
    for stage in (*DATA_STAGES, "trained_model", "evaluation_report"):
        assert f"skip {stage}: up to date" in out
    # A machine setting changes how training runs, not what it makes: still nothing to run.
    machine = write_config(tmp_path / "machine.yaml", {**TINY_MODEL, "num_threads": 1})
    assert main(["run", "--corpus", "loop", "--config", machine]) == 0
    assert "nothing to run" in capsys.readouterr().out

    # A training setting changed: training and the report only, the data stages skipped.
    shorter = write_config(tmp_path / "shorter.yaml", {**TINY_MODEL, "max_steps": 40})
    assert main(["run", "--corpus", "loop", "--config", shorter]) == 0
    out = capsys.readouterr().out
    assert "run  trained_model: settings changed: max_steps (80 → 40)" in out
    assert "run  evaluation_report: trained_model will be redone" in out
    for stage in DATA_STAGES:
        assert f"skip {stage}: up to date" in out
        assert materializations(instance, stage) == 1
    assert materializations(instance, "trained_model") == 2
    # Its report names the differing budget next to the champion's.
    report = data_root.parent / "models" / "loop" / read_pointer("loop", LATEST) / "report.md"
    text = report.read_text()
    assert champion is not None  # compared with the first model, promoted or not
    assert "different settings" in text and "max\\_steps (80 → 40)" in text

    # --from and --force choose by hand; the plan says so.
    plan = plan_run(instance, "loop", {}, from_stage="token_shards")
    assert list(plan.run) == ["token_shards", "trained_model", "evaluation_report"]
    assert plan.skip["tokenizer"] == "before --from token_shards"
    assert next(iter(plan_run(instance, "loop", {}, force=True).run)) == "raw_corpus"
    assert main(["run", "--corpus", "loop", "--from", "nope"]) == 2
    assert "unknown stage 'nope'" in capsys.readouterr().err

    # Two steps cannot beat the unigram baseline: the report is still written, marked at the
    # top, and the model is not promoted; the run exits 1.
    before = read_pointer("loop", CURRENT)
    weak = write_config(tmp_path / "weak.yaml", {**TINY_MODEL, "max_steps": 2})
    assert main(["run", "--corpus", "loop", "--config", weak, "--from", "trained_model"]) == 1
    out = capsys.readouterr().out
    assert "check beats_unigram_baseline: FAILED" in out
    assert "FAILED checks: beats_unigram_baseline" in out
    latest = read_pointer("loop", LATEST)
    assert latest != before and read_pointer("loop", CURRENT) == before
    folder = data_root.parent / "models" / "loop" / latest
    top = (folder / "report.md").read_text().split("## Headline metrics")[0]
    assert "failed its checks and was not promoted" in top and "Try:" in top
    assert read_config(folder).summary is not None
    # The same settings would train the same model: a plain run redoes nothing; a data stage
    # whose blocking check failed would be made again (test_plan_redoes_a_refused_stage).
    plan = plan_run(instance, "loop", load_run_config(weak, stage_settings()))
    assert not plan.run, plan.run


def test_plan_redoes_a_stage_whose_blocking_check_failed(
    tmp_path: Path, data_root: Path, instance, monkeypatch
) -> None:
    """Only making it again runs the check that keeps what comes after from using it."""
    from llm_pipeline.cli import overview, plan

    states = [
        overview.StageState("raw_corpus", 1.0, "r1"),
        overview.StageState("cleaned_corpus", 2.0, "r1", checks={"split_leakage": False}),
        overview.StageState("tokenizer", None, stale_because="never materialized"),
        overview.StageState("token_shards", None, stale_because="never materialized"),
        overview.StageState("trained_model", 3.0, "r0", checks={"beats_unigram_baseline": False}),
        overview.StageState("evaluation_report", 4.0, "r0"),
    ]
    monkeypatch.setattr(overview, "stage_states", lambda *args: states)
    monkeypatch.setattr(plan, "_last_config", lambda *args: {})
    result = plan_run(instance, "loop", {})
    assert result.run["cleaned_corpus"] == "check split_leakage failed last time"
    assert "raw_corpus" in result.skip
    assert result.run["trained_model"] == "tokenizer, token_shards will be redone"


def test_run_sees_a_default_that_changed_since_the_newest_model(data_root: Path) -> None:
    """`run` and the schedule judge the model's settings by one rule: a default an upgrade
    changed retrains (comparing two run configs, both resolved with today's defaults, would
    not see it); the same settings do not."""
    import json

    from llm_pipeline.cli.plan import model_settings_change
    from llm_pipeline.lm.settings import ModelConfig, TrainConfig, TrainedModelSettings
    from llm_pipeline.lm.store.folders import write_pointer

    settings = TrainedModelSettings.resolve({"vocab_size": 300})
    training = TrainConfig.fields_of(settings)
    run = data_root.parent / "models" / "deflt" / "run-1"
    run.mkdir(parents=True)

    def save(training: dict) -> None:
        config = {"model": ModelConfig.fields_of(settings), "training": training}
        (run / "config.json").write_text(json.dumps({**config, "data": {"corpus": "deflt"}}))

    save(training)
    write_pointer("deflt", LATEST, "run-1")
    assert model_settings_change("deflt", {}) is None
    save({**training, "weight_decay": training["weight_decay"] + 0.05})  # an older default
    change = model_settings_change("deflt", {})
    assert change is not None and "a default changed: weight_decay" in change
