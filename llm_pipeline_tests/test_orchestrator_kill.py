"""SIGKILL the process group that runs the pipeline, mid-training, as a reboot or OOM kill would.

Asserts what the user needs afterwards: no trainer left running, the dead run found, marked
failed and its gpu slot freed (doctor lists it, the schedule tick clears it and does not skip
the corpus), and a rerun that resumes from the killed run's last state and succeeds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from dagster import AssetKey, DagsterRunStatus, RunsFilter, build_schedule_context

from llm_pipeline.automation.schedules import _active_corpora
from llm_pipeline.cli import main
from llm_pipeline.dagster_compat import pool_slots_of_run
from llm_pipeline.lm.store.folders import run_dir, training_state_root
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline_tests.test_model_pipeline import TINY_MODEL, make_structured_corpus
from llm_pipeline_tests.test_pipeline import FAST

CORPUS = "killed"
TRAINING = {**TINY_MODEL, "max_steps": 0, "max_seconds": 25, "log_interval": 5}


def materialize_trained_model(log: Path) -> subprocess.Popen:
    """`dagster asset materialize` of trained_model, in its own process group, logging to `log`."""
    command = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "llm_pipeline.definitions",
        "--select",
        "trained_model",
        "--partition",
        CORPUS,
        "--config-json",
        json.dumps({"ops": {"trained_model": {"config": TRAINING}}}),
    ]
    with log.open("w") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def test_orchestrator_killed_mid_training(data_root: Path, instance, tmp_path: Path, capsys):
    make_structured_corpus(data_root / "raw" / CORPUS, n_docs=60)
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, [CORPUS])
    config = tmp_path / "data.yaml"
    config.write_text(json.dumps({k: v["config"] for k, v in FAST.items()}))
    assert main(["materialize", "--corpus", CORPUS, "--config", str(config)]) == 0

    log = tmp_path / "first.log"
    first = materialize_trained_model(log)
    descendants: list[psutil.Process] = []
    try:
        wait_for(lambda: "tok/s" in log.read_text(), 240, "the first training progress line")
        descendants = psutil.Process(first.pid).children(recursive=True)
        trainers = [p for p in descendants if "llm_pipeline.lm.train.trainer_main" in p.cmdline()]
        assert trainers, "no trainer process found under the orchestrator"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        # The trainer is in its own process group: only the parent-death signal reaches it.
        _, alive = psutil.wait_procs(descendants, timeout=20)
        assert not alive, f"processes outlived the killed orchestrator: {alive}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        for process in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()

    [dead] = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
    assert dead.status == DagsterRunStatus.STARTED  # what Dagster believes until told otherwise
    assert not run_dir(CORPUS, dead.run_id).exists()  # nothing written for the dead run
    states = list(training_state_root(CORPUS).glob("*/state.json"))
    assert states, "the trainer saved no training state when its parent died"
    saved_step = json.loads(states[0].read_text())["step"]
    assert saved_step > 0

    assert main(["doctor", "--dry-run"]) == 0
    assert f"dead run {dead.run_id} [{CORPUS}]" in capsys.readouterr().out
    # A schedule tick clears it and does not skip the corpus as "run in flight".
    assert CORPUS not in _active_corpora(build_schedule_context(instance=instance))
    failed = instance.get_run_by_id(dead.run_id)
    assert failed.status == DagsterRunStatus.FAILURE
    assert pool_slots_of_run(instance, dead.run_id) == {}

    rerun_log = tmp_path / "rerun.log"
    rerun = materialize_trained_model(rerun_log)
    try:
        assert rerun.wait(timeout=400) == 0, rerun_log.read_text()[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(rerun.pid, signal.SIGKILL)
    text = rerun_log.read_text()
    assert f"resuming a previous run's training state at step {saved_step}" in text
    event = instance.get_latest_materialization_event(AssetKey("trained_model"))
    metadata = event.asset_materialization.metadata
    assert metadata["resumed_from_step"].value == saved_step
    assert metadata["time_lost_s"].value >= 0
    assert CORPUS not in _active_corpora(build_schedule_context(instance=instance))
