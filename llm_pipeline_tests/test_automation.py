"""Retrain schedule and new-corpus sensor, ticked against a real instance and real models."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from dagster import DagsterRunStatus, build_schedule_context, build_sensor_context
from dagster._core.test_utils import create_run_for_test

from llm_pipeline.automation.schedules import (
    REASON_TAG,
    RETRAIN_CONFIG_ENV,
    RETRAIN_CRON_ENV,
    InvalidScheduleSetting,
    retrain_cron,
    retrain_schedule,
)
from llm_pipeline.automation.sensors import SETTLE_SECONDS_ENV, new_corpus_sensor
from llm_pipeline.definitions import defs
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline_tests.test_model_pipeline import (
    REPORT,
    TINY_MODEL,
    make_structured_corpus,
    run_graph,
)
from llm_pipeline_tests.test_pipeline import FAST, failures

REPOSITORY = defs.get_repository_def()
TICK = datetime(2026, 11, 29, 3, 0, tzinfo=timezone.utc)


def tick(instance, when: datetime = TICK):
    """Evaluate one schedule tick the way the daemon does, against the real instance."""
    context = build_schedule_context(
        instance=instance, scheduled_execution_time=when, repository_def=REPOSITORY
    )
    return retrain_schedule.evaluate_tick(context)


def requested(data) -> dict[str, str]:
    return {r.partition_key: r.tags[REASON_TAG] for r in data.run_requests or []}


def test_retrain_cron_from_env_and_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RETRAIN_CRON_ENV, raising=False)
    assert retrain_cron() == "0 3 * * 0"
    monkeypatch.setenv(RETRAIN_CRON_ENV, "30 2 * * 1-5")
    assert retrain_cron() == "30 2 * * 1-5"
    for bad in ("61 * * * *", "every sunday", "* * *"):
        monkeypatch.setenv(RETRAIN_CRON_ENV, bad)
        with pytest.raises(InvalidScheduleSetting, match=RETRAIN_CRON_ENV):
            retrain_cron()


def test_invalid_cron_fails_definitions_load_with_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, RETRAIN_CRON_ENV: "0 25 * * *", "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", "import llm_pipeline.definitions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "InvalidScheduleSetting" in last and "'0 25 * * *' is not a valid cron" in last


def test_schedule_runs_exactly_the_corpora_whose_data_or_config_changed(
    tmp_path: Path, data_root: Path, instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    retrain_config = tmp_path / "retrain.yaml"
    settings = {
        **{name: ops["config"] for name, ops in FAST.items()},
        "trained_model": TINY_MODEL,
        "evaluation_report": REPORT,
    }
    retrain_config.write_text(yaml.safe_dump(settings))
    monkeypatch.setenv(RETRAIN_CONFIG_ENV, str(retrain_config))

    for name in ("alpha", "beta", "gamma"):
        make_structured_corpus(data_root / "raw" / name)
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["alpha", "beta", "gamma", "delta"])
    assert requested(tick(instance)) == {
        "alpha": "no trained model yet",
        "beta": "no trained model yet",
        "gamma": "no trained model yet",
    }

    for name in ("alpha", "beta"):  # real models, trained with the schedule's own settings
        result = run_graph(instance, name, TINY_MODEL, REPORT)
        assert result.success, failures(result)

    first = requested(tick(instance))
    assert first == {"gamma": "no trained model yet"}  # delta has no raw folder at all

    # Nothing changed for alpha/beta; gamma already has a run in progress: a reason for each.
    create_run_for_test(
        instance,
        job_name="corpus_pipeline_job",
        status=DagsterRunStatus.STARTED,
        tags={"dagster/partition": "gamma"},
    )
    quiet = tick(instance)
    assert not quiet.run_requests
    assert "alpha: unchanged since champion" in quiet.skip_message
    assert "beta: unchanged since champion" in quiet.skip_message
    assert "gamma: a pipeline run is already queued or running" in quiet.skip_message
    raw_delta = data_root / "raw" / "delta"
    assert f"delta: nothing to train on: no raw folder {raw_delta}" in quiet.skip_message

    # Issue 26: a machine setting (threads, device) is no training change.
    settings["trained_model"] = {**TINY_MODEL, "num_threads": 1, "device": "cpu"}
    retrain_config.write_text(yaml.safe_dump(settings))
    assert "alpha: unchanged since champion" in tick(instance).skip_message
    settings["trained_model"] = TINY_MODEL
    retrain_config.write_text(yaml.safe_dump(settings))

    # New bytes in beta's raw folder: only beta is retrained.
    with open(data_root / "raw" / "beta" / "more.txt", "w") as fh:
        fh.write("A new document arrived after training.\n")
    changed = requested(tick(instance))
    assert set(changed) == {"beta"}
    assert changed["beta"].startswith("raw data changed since model ")

    # A different training setting: every corpus with a model (and unchanged data) is retrained.
    settings["trained_model"] = {**TINY_MODEL, "n_embd": 48}
    retrain_config.write_text(yaml.safe_dump(settings))
    reconfigured = requested(tick(instance))
    assert set(reconfigured) == {"alpha", "beta"}
    assert reconfigured["alpha"].endswith(f": n_embd ({TINY_MODEL['n_embd']} → 48)")
    assert reconfigured["beta"].startswith("raw data changed")

    # Each request carries the scheduled run config, and one run key per corpus per tick.
    data = tick(instance)
    request = next(r for r in data.run_requests if r.partition_key == "alpha")
    assert request.run_config["ops"]["trained_model"]["config"]["n_embd"] == 48
    later = tick(instance, TICK.replace(day=30))
    keys = {r.run_key for r in data.run_requests} | {r.run_key for r in later.run_requests}
    assert len(keys) == 4


def test_schedule_with_no_corpora_says_so(instance, data_root: Path) -> None:
    data = tick(instance)
    assert not data.run_requests and data.skip_message == "no corpora registered"


def test_broken_retrain_config_fails_the_tick_naming_the_file(
    tmp_path: Path, data_root: Path, instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "retrain.yaml"
    bad.write_text("trained_model: {n_layers: 3}\n")  # a typo
    monkeypatch.setenv(RETRAIN_CONFIG_ENV, str(bad))
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["alpha"])
    # Dagster wraps the error as "Error occurred during the evaluation of schedule …"; the tick's
    # error in the UI shows this cause under it.
    with pytest.raises(Exception) as failed:
        tick(instance)
    assert isinstance(failed.value.__cause__, InvalidScheduleSetting)
    assert re.match(
        rf"{re.escape(str(bad))}: invalid settings: .*n_layers", str(failed.value.__cause__)
    )
    bad.write_text("trained_model: {n_layer: many}\n")
    with pytest.raises(Exception) as failed:
        tick(instance)
    assert str(failed.value.__cause__).startswith(f"{bad}: trained_model: n_layer")


def sensor_tick(instance, cursor: str | None):
    """Evaluate one sensor tick as the daemon does: with the instance's ref and the repository."""
    context = build_sensor_context(
        instance=instance, instance_ref=instance.get_ref(), cursor=cursor, repository_def=REPOSITORY
    )
    return new_corpus_sensor.evaluate_tick(context)


def test_new_corpus_sensor_registers_and_runs_each_valid_folder_once(
    data_root: Path, instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = data_root / "raw"
    assert sensor_tick(instance, None).skip_message == f"no new folders under {raw}"
    monkeypatch.setenv(SETTLE_SECONDS_ENV, "0")
    make_structured_corpus(raw / "news", n_docs=5)
    make_structured_corpus(raw / "Bad Name", n_docs=5)
    (raw / "empty").mkdir()
    (raw / ".hidden").mkdir()

    first = sensor_tick(instance, None)
    assert [r.partition_key for r in first.run_requests] == ["news"]
    assert first.run_requests[0].job_name in (None, "corpus_pipeline_job")
    [add] = first.dynamic_partitions_requests
    assert add.partitions_def_name == CORPUS_PARTITIONS_NAME
    assert list(add.partition_keys) == ["news"]
    assert json.loads(first.cursor)["seen"] == ["Bad Name", "news"]
    # The daemon applies the partition request; do what it does, then tick again.
    instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))

    second = sensor_tick(instance, first.cursor)
    assert not second.run_requests and not second.dynamic_partitions_requests
    assert second.skip_message == "empty: no files yet"  # invalid name reported only once

    # A folder registered by `llm-pipeline corpus add` is left alone; a new one is picked up.
    make_structured_corpus(raw / "manual", n_docs=5)
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["manual"])
    make_structured_corpus(raw / "empty", n_docs=5)
    third = sensor_tick(instance, second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["empty"]
    assert set(json.loads(third.cursor)["seen"]) == {"Bad Name", "news", "manual", "empty"}


def test_new_corpus_sensor_waits_until_files_settle(
    data_root: Path, instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SETTLE_SECONDS_ENV, "600")
    folder = data_root / "raw" / "copying"
    make_structured_corpus(folder, n_docs=5)
    waiting = sensor_tick(instance, None)
    assert not waiting.run_requests
    assert "copying: files changed in the last 600 s" in waiting.skip_message
    old = time.time() - 3600
    for file in folder.iterdir():
        os.utime(file, (old, old))
    ready = sensor_tick(instance, waiting.cursor)
    assert [r.partition_key for r in ready.run_requests] == ["copying"]

    monkeypatch.setenv(SETTLE_SECONDS_ENV, "soon")
    with pytest.raises(Exception, match=SETTLE_SECONDS_ENV):
        sensor_tick(instance, None)
