"""Issue 26, the everyday loop, in fast tests: threads picked from the free CPUs, comparisons
that say when they mean nothing, corpora checked when added and removable, unknown names with a
"did you mean", the schedule against the champion, schedule and sensor from the command line,
and the smaller fixes. The end-to-end half (incremental `run`, a report despite a failed check)
is in test_loop_run.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from llm_pipeline.cli import main
from llm_pipeline.lm.settings import ModelConfig, TrainConfig, TrainedModelSettings
from llm_pipeline.lm.store.folders import write_pointer
from llm_pipeline.lm.train import threads
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline.report.promotion import (
    PromotionDecision,
    comparison_notes,
    noise_note,
    refuse_failed,
)
from llm_pipeline.report.render import ReportInputs, render_html, render_markdown


def test_threads_take_the_free_cpus_and_the_setting_wins(monkeypatch) -> None:
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert threads.free_cpus(2, busy=0.1) == 2  # a quiet machine: every core
    assert threads.free_cpus(2, busy=1.0) == 1  # one busy process: the other core
    assert threads.free_cpus(2, busy=2.0) == 1  # never fewer than one
    assert threads.free_cpus(2, busy=0.3) == 2  # a core mostly idle still counts as free
    monkeypatch.setattr(threads, "allowed_cpus", lambda: 2)
    monkeypatch.setattr(threads, "busy_cpus", lambda seconds: 1.0)
    assert threads.choose_threads(0).threads == 1
    assert "1.0 busy" in threads.choose_threads(0).reason
    assert threads.choose_threads(2) == threads.ThreadChoice(2, "num_threads setting")
    monkeypatch.setattr(threads, "busy_cpus", lambda seconds: None)  # no /proc/stat
    assert threads.choose_threads(0).threads == 2


def test_busy_cpus_reads_this_machine() -> None:
    busy = threads.busy_cpus(0.05)
    assert busy is None or 0.0 <= busy <= (threads.os.cpu_count() or 1) + 0.01
    assert 1 <= threads.allowed_cpus() <= (threads.os.cpu_count() or 1)


def test_a_difference_within_the_noise_says_so() -> None:
    # The case: 0.019 worse, each score ±0.025 (the difference's error is ±0.035).
    note = noise_note(0.019, 0.025, 0.025)
    assert note is not None and "within the noise" in note and "+0.0190" in note
    assert noise_note(0.2, 0.025, 0.025) is None  # a real difference
    assert noise_note(0.019, None, 0.025) is None  # no error known: no claim either way


def test_different_budgets_and_settings_are_named_machine_settings_are_not() -> None:
    base = {"n_layer": 2, "max_seconds": 300.0, "num_threads": 0, "device": "auto"}
    challenger = {**base, "max_seconds": 20.0, "num_threads": 1, "device": "cpu"}
    notes = comparison_notes(
        0.3,
        (0.01, 0.01),
        (challenger, base),
        ((250_000, 20.0), (4_000_000, 300.0)),
        frozenset({"num_threads", "device"}),
    )
    assert len(notes) == 2
    assert "different settings" in notes[0] and "max_seconds (300.0 → 20.0)" in notes[0]
    assert "num_threads" not in notes[0] and "device" not in notes[0]
    assert "different budgets" in notes[1] and "250,000 tokens in 20 s" in notes[1]
    same = comparison_notes(0.3, (0.01, 0.01), (base, base), ((100, 1.0), (105, 1.0)), frozenset())
    assert same == ()


def test_a_model_that_failed_a_check_is_reported_at_the_top_and_never_promoted() -> None:
    better = PromotionDecision(True, "no worse than the champion", "new", 1.0, "old", 1.5)
    refused = refuse_failed(better, ["beats_unigram_baseline"])
    assert not refused.promoted and "failed its checks (beats_unigram_baseline)" in refused.reason
    first = PromotionDecision(True, "first model for this corpus", "new", 9.0)
    assert not refuse_failed(first, ["losses_finite"]).promoted
    assert refuse_failed(better, []) is better
    inputs = ReportInputs(
        title="c — run new",
        metrics={"bits_per_byte": 9.0},
        eval_files={},
        history=[],
        samples=[],
        comparison={**refused.as_comparison(), "notes": ["The difference is within the noise"]},
        failed_checks={"beats_unigram_baseline": "not below the unigram baseline. Try: more"},
    )
    markdown = render_markdown(inputs, {})
    top = markdown.split("## Headline metrics")[0]
    assert "failed its checks and was not promoted" in top and "beats\\_unigram\\_baseline" in top
    assert "Try: more" in top and "within the noise" in markdown
    html = render_html(inputs, {})
    assert html.index('class="failed"') < html.index("Headline metrics")


def test_corpus_add_refuses_a_folder_with_nothing_usable(
    tmp_path: Path, data_root: Path, instance, capsys
) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["corpus", "add", "void", str(tmp_path / "empty")]) == 1
    assert "has no files" in capsys.readouterr().err
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "README").write_text("text without an extension")
    (odd / "LICENSE").write_text("more text without an extension")
    assert main(["corpus", "add", "odd", str(odd)]) == 1
    err = capsys.readouterr().err
    assert "LICENSE (unsupported type)" in err and "README (unsupported type)" in err
    assert "supported: .txt, .md, .jsonl" in err and "Nothing was registered" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jsonl").write_text('{"title": "no text field"}\n{broken\n')
    assert main(["corpus", "add", "broken", str(broken)]) == 1
    assert "no readable document" in capsys.readouterr().err
    assert instance.get_dynamic_partitions(CORPUS_PARTITIONS_NAME) == []
    assert not (data_root / "raw" / "odd").exists()  # nothing of a failed new corpus is kept


def test_corpus_remove_keeps_files_unless_purged_and_names_get_did_you_mean(
    tmp_path: Path, data_root: Path, instance, capsys
) -> None:
    (tmp_path / "a.txt").write_text("Some text for the corpus, enough to be a document.\n")
    assert main(["corpus", "add", "notes", str(tmp_path / "a.txt")]) == 0
    capsys.readouterr()
    for argv in (["status", "--corpus", "note"], ["run", "--corpus", "note"]):
        assert main(argv) == 2
        assert "did you mean 'notes'?" in capsys.readouterr().err
    assert main(["corpus", "remove", "note"]) == 2
    assert "did you mean 'notes'?" in capsys.readouterr().err
    assert main(["corpus", "remove", "notes"]) == 0
    assert "kept" in capsys.readouterr().out
    assert instance.get_dynamic_partitions(CORPUS_PARTITIONS_NAME) == []
    assert (data_root / "raw" / "notes" / "a.txt").exists()
    assert main(["corpus", "add", "notes", "--if-missing"]) == 0  # registered again from disk
    assert main(["corpus", "remove", "notes", "--purge"]) == 0
    assert not (data_root / "raw" / "notes").exists()


def _fake_model(models: Path, corpus: str, run_id: str, raw: Path, **training) -> None:
    """A checkpoint `config.json` as the trainer writes it (what the schedule reads)."""
    from llm_pipeline.text.read.readers import fingerprint_files

    settings = TrainedModelSettings.resolve({"vocab_size": 300, **training})
    folder = models / corpus / run_id
    folder.mkdir(parents=True)
    config = {
        "model": ModelConfig.fields_of(settings),
        "training": TrainConfig.fields_of(settings),
        "data": {"corpus": corpus, "raw_fingerprint": fingerprint_files(raw)},
    }
    (folder / "config.json").write_text(json.dumps(config))


def test_schedule_compares_with_the_champion_and_ignores_machine_settings(
    tmp_path: Path,
) -> None:
    from llm_pipeline.automation.schedules import retrain_decision

    data, models = tmp_path / "data", tmp_path / "models"
    raw = data / "raw" / "c"
    raw.mkdir(parents=True)
    (raw / "a.txt").write_text("some text for the corpus\n")
    _fake_model(models, "c", "champ", raw)
    write_pointer("c", "current", "champ", models)
    (raw / "b.txt").write_text("text that arrived after the champion\n")
    _fake_model(models, "c", "newer", raw, max_steps=5)  # trained on today's data, lost
    write_pointer("c", "latest", "newer", models)
    # Against the champion: the data changed since it; the newer model tried other settings.
    decision = retrain_decision("c", {}, data, models)
    assert decision.retrain and decision.reason == "raw data changed since model champ"
    # The newer model already tried today's data with these settings: not again.
    config = {"ops": {"trained_model": {"config": {"max_steps": 5}}}}
    decision = retrain_decision("c", config, data, models)
    assert not decision.retrain and "model newer was already trained" in decision.reason
    # Threads, device, compile: how a run goes, not what it trains.
    machine = {"num_threads": 1, "device": "cpu", "compile": True, "measure_mfu": False}
    config = {"ops": {"trained_model": {"config": {"max_steps": 5, **machine}}}}
    assert not retrain_decision("c", config, data, models).retrain
    # A corpus of nothing usable is skipped, saying why.
    for name in ("a.txt", "b.txt"):
        (raw / name).unlink()
    (raw / "README").write_text("no extension")
    decision = retrain_decision("c", {}, data, models)
    assert not decision.retrain
    assert decision.reason.startswith("nothing to train on: no usable file")
    assert "README (unsupported type)" in decision.reason


def test_schedule_and_sensor_turn_on_and_off_from_the_cli(
    data_root: Path, instance, capsys
) -> None:
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import InstigatorStatus

    def states(kind: InstigatorType) -> dict:
        found = instance.all_instigator_state(instigator_type=kind)
        return {s.origin.instigator_name: s for s in found}

    assert main(["schedule", "on"]) == 0
    assert "retrain_schedule: turned on" in capsys.readouterr().out
    state = states(InstigatorType.SCHEDULE)["retrain_schedule"]
    assert state.status == InstigatorStatus.RUNNING
    # Stored under the workspace's location name, which the daemon and the UI look it up by.
    assert state.selector_id == state.origin.get_selector().get_id()
    assert state.origin.repository_origin.code_location_origin.location_name == "llm_pipeline"
    assert main(["schedule", "on"]) == 0
    assert "already on" in capsys.readouterr().out
    assert main(["schedule", "off"]) == 0
    assert states(InstigatorType.SCHEDULE)["retrain_schedule"].status != InstigatorStatus.RUNNING
    assert main(["sensor", "on"]) == 0
    assert states(InstigatorType.SENSOR)["new_corpus_sensor"].status == InstigatorStatus.RUNNING
    assert main(["sensor", "off", "nope"]) == 2
    assert "unknown sensor 'nope'" in capsys.readouterr().err


def test_generate_refuses_a_negative_temperature(data_root: Path, capsys) -> None:
    argv = ["generate", "--corpus", "c", "--prompt", "x", "--temperature", "-1"]
    assert main(argv) == 2
    assert "temperature" in capsys.readouterr().err
    assert main([*argv[:-1], "0.5", "--top-k", "-3"]) == 2
    assert "top_k" in capsys.readouterr().err


def test_exports_folder_is_git_ignored() -> None:
    root = Path(__file__).resolve().parents[1]
    if subprocess.run(["git", "rev-parse"], cwd=root, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    for path in ("exports/notes-hf/config.json", "exports/.notes-hf.lock"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 0


@pytest.mark.parametrize("step", ["raw_corpus", "cleaned_corpus_split_leakage", "tokenizer"])
def test_a_failed_run_gets_one_line_of_advice(step: str) -> None:
    from llm_pipeline.cli.failures import failed_run_lines

    lines = failed_run_lines([(step, "it broke\ntraceback")], {}, ["later", "later_x"], "c")
    assert lines[0] == f"FAILED {step}: it broke"
    assert lines[1].startswith("try: ")
    assert lines[2] == "skipped because of it: later"


def test_new_corpus_sensor_leaves_a_folder_of_nothing_usable_alone(
    data_root: Path, instance, monkeypatch
) -> None:
    from dagster import build_sensor_context

    from llm_pipeline.automation.sensors import SETTLE_SECONDS_ENV, new_corpus_sensor
    from llm_pipeline.definitions import defs

    monkeypatch.setenv(SETTLE_SECONDS_ENV, "0")
    (data_root / "raw" / "licences").mkdir(parents=True)
    (data_root / "raw" / "licences" / "COPYING").write_text("no extension")
    context = build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        repository_def=defs.get_repository_def(),
    )
    result = new_corpus_sensor.evaluate_tick(context)
    assert not result.run_requests
    assert "licences: not registered, no usable file" in result.skip_message
    assert "COPYING (unsupported type)" in result.skip_message
