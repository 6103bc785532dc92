"""Dead runs: a STARTED run whose processes are gone is marked failed and frees its gpu slot."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterRun,
    DagsterRunStatus,
    EventLogEntry,
    build_schedule_context,
)

from llm_pipeline.automation.dead_runs import (
    HOST_TAG,
    clear_dead_runs,
    find_dead_runs,
    this_host,
)
from llm_pipeline.automation.schedules import _active_corpora
from llm_pipeline.cli import main
from llm_pipeline.dagster_compat import pool_slots_of_run
from llm_pipeline.tags import GPU_POOL


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def started_run(instance, corpus: str, pid: int, host: str | None = None) -> DagsterRun:
    """A run as a killed `llm-pipeline materialize` leaves it: STARTED, holding a gpu slot."""
    tags = {"dagster/partition": corpus, **({HOST_TAG: host} if host else {})}
    run = instance.add_run(
        DagsterRun(job_name="corpus_pipeline_job", status=DagsterRunStatus.STARTED, tags=tags)
    )
    event = DagsterEvent(DagsterEventType.RUN_START.value, job_name=run.job_name, pid=pid)
    instance.store_event(
        EventLogEntry(
            error_info=None,
            level="DEBUG",
            user_message="",
            run_id=run.run_id,
            timestamp=time.time(),
            dagster_event=event,
            job_name=run.job_name,
        )
    )
    storage = instance.event_log_storage
    storage.set_concurrency_slots(GPU_POOL, 1)
    storage.claim_concurrency_slot(GPU_POOL, run.run_id, "trained_model")
    return run


def test_dead_run_is_marked_failed_and_its_slot_freed(instance) -> None:
    dead = started_run(instance, "books", dead_pid(), host=this_host())
    assert pool_slots_of_run(instance, dead.run_id) == {GPU_POOL: 1}
    found = find_dead_runs(instance)
    assert [d.run_id for d in found] == [dead.run_id]
    assert "run worker gone" in found[0].reason
    cleared = clear_dead_runs(instance, corpus="books")
    assert [d.run_id for d in cleared] == [dead.run_id]
    after = instance.get_run_by_id(dead.run_id)
    assert after.status == DagsterRunStatus.FAILURE
    failure = instance.all_logs(dead.run_id, of_type=DagsterEventType.RUN_FAILURE)
    assert "run worker gone" in failure[0].message
    assert pool_slots_of_run(instance, dead.run_id) == {}


def test_live_runs_and_other_hosts_runs_are_left_alone(instance) -> None:
    live = started_run(instance, "live", os.getpid())
    remote = started_run(instance, "remote", dead_pid(), host="another-machine")
    assert find_dead_runs(instance) == []
    assert clear_dead_runs(instance) == []
    for run in (live, remote):
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED


def test_schedule_skips_only_live_runs(instance) -> None:
    started_run(instance, "live", os.getpid())
    dead = started_run(instance, "dead", dead_pid())
    context = build_schedule_context(instance=instance)
    assert _active_corpora(context) == {"live"}
    assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE


def test_doctor_lists_then_clears(instance, capsys) -> None:
    dead = started_run(instance, "books", dead_pid())
    assert main(["doctor", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"dead run {dead.run_id} [books]" in out and f"holds 1 {GPU_POOL}" in out
    assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.STARTED
    assert main(["doctor"]) == 0
    assert "1 dead run(s) marked failed" in capsys.readouterr().out
    assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE
    assert main(["doctor"]) == 0
    assert "no dead runs" in capsys.readouterr().out


def test_the_written_dagster_yaml_turns_on_run_monitoring(tmp_path, monkeypatch) -> None:
    from dagster import DagsterInstance

    from llm_pipeline.cli.common import DAGSTER_YAML

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 60
        assert instance.run_monitoring_start_timeout_seconds == 300


def test_a_new_run_starting_clears_dead_runs(instance) -> None:
    """`ensure_gpu_pool` runs as every run starts (the executor, `llm-pipeline materialize`)."""
    from llm_pipeline.automation.executor import ensure_gpu_pool

    dead = started_run(instance, "books", dead_pid())
    ensure_gpu_pool(instance)
    assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE
    assert pool_slots_of_run(instance, dead.run_id) == {}
