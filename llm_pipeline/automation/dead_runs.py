"""Dead runs: runs the instance still calls STARTED whose processes are all gone.

A `kill -9` of `llm-pipeline materialize`, an out-of-memory kill of a run worker or a reboot
leaves the run `STARTED` for ever: Dagster only learns a run ended from the run itself. Such a
run keeps its slot in the `gpu` pool (no training can start again) and makes `retrain_schedule`
skip its corpus as "run in flight".

Dagster's run monitoring (`run_monitoring` in `dagster.yaml`, which `make ui` and the CLI
write; run by the daemon) covers what it can see: runs stuck `STARTING`
(`start_timeout_seconds`), runs over `dagster/max_runtime`, slots of *finished* runs
(`free_slots_after_run_end_seconds`), and dead run workers on launchers that can report their
health (Kubernetes, Docker). The default run launcher and in-process runs (`llm-pipeline
materialize`) report no health, so this module decides from what the run itself recorded:

- the host: every asset step tags its run with `llm_pipeline/host` (assets/_common.py);
  a run from another machine is left alone (only that machine can tell);
- the processes: every event carries the pid of the process that wrote it; the run's
  orchestrator wrote `RUN_START`, each step process its `STEP_START`. When none of them is
  alive (or a pid now belongs to a process started later), the run is dead.

A dead run is marked FAILURE with the reason and its pool slots are freed (and, with tracking
on, an MLflow run its trainer left RUNNING is marked KILLED); this happens when a
new run starts (`ensure_gpu_pool`), at each `retrain_schedule` tick and with
`llm-pipeline doctor`. The private calls this takes are in `llm_pipeline.dagster_compat`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

import psutil
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from llm_pipeline.dagster_compat import free_pool_slots_of_run, mark_run_failed
from llm_pipeline.lm.tracking.records import end_unfinished_run

HOST_TAG = "llm_pipeline/host"
PARTITION_TAG = "dagster/partition"
# Statuses in which a run's own process is supposed to be alive. STARTING belongs to the
# launcher and to Dagster's `start_timeout_seconds`; QUEUED runs have no process yet.
RUNNING_STATUSES = [DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
_CLOCK_SLACK_S = 2.0


def this_host() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class DeadRun:
    """A run whose worker is gone, and why we say so."""

    run_id: str
    job_name: str
    corpus: str | None
    status: str
    reason: str


def _process_alive(pid: int, since: float) -> bool:
    """Whether `pid` is a live process that already existed at `since` (no reused pid)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= since + _CLOCK_SLACK_S
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def run_processes(instance: DagsterInstance, run_id: str) -> dict[int, float]:
    """The pids that wrote the run's start events, each with its first event's time."""
    types = {DagsterEventType.RUN_START, DagsterEventType.STEP_START}
    pids: dict[int, float] = {}
    for entry in instance.all_logs(run_id, of_type=types):
        pid = entry.dagster_event.pid if entry.dagster_event else None
        if pid is not None and pid not in pids:
            pids[int(pid)] = entry.timestamp
    return pids


def why_dead(instance: DagsterInstance, run: DagsterRun) -> str | None:
    """The reason `run` is dead, or None when it may be alive (or cannot be judged here)."""
    host = run.tags.get(HOST_TAG)
    if host is not None and host != this_host():
        return None  # another machine's run: only Dagster's run monitoring can judge it there
    pids = run_processes(instance, run.run_id)
    if not pids:
        return None  # no process recorded yet: the launcher's (start_timeout_seconds)
    if any(_process_alive(pid, since) for pid, since in pids.items()):
        return None
    listed = ", ".join(str(pid) for pid in sorted(pids))
    return (
        f"run worker gone: no process of this run is alive (pid {listed} on {host or this_host()}"
        "); it was killed, ran out of memory or the machine restarted. Marked failed by "
        "llm-pipeline; rerun it (training resumes from its last saved state)"
    )


def find_dead_runs(instance: DagsterInstance, corpus: str | None = None) -> list[DeadRun]:
    """Runs the instance calls running whose processes are all gone (of `corpus`, if given)."""
    tags = {PARTITION_TAG: corpus} if corpus else None
    dead = []
    for run in instance.get_runs(RunsFilter(statuses=RUNNING_STATUSES, tags=tags)):
        reason = why_dead(instance, run)
        if reason is not None:
            dead.append(
                DeadRun(
                    run.run_id,
                    run.job_name,
                    run.tags.get(PARTITION_TAG),
                    run.status.value,
                    reason,
                )
            )
    return dead


TRAINING_STEP = "trained_model"


def _started_step(instance: DagsterInstance, run_id: str, step_key: str) -> bool:
    """Whether the run started the step (only a training step can leave an MLflow run)."""
    logs = instance.all_logs(run_id, of_type={DagsterEventType.STEP_START})
    return any(e.dagster_event is not None and e.dagster_event.step_key == step_key for e in logs)


def clear_dead_runs(
    instance: DagsterInstance,
    corpus: str | None = None,
    log: Callable[[str], None] | None = None,
) -> list[DeadRun]:
    """Mark every dead run failed (with its reason) and free its pool slots; return them."""
    cleared = find_dead_runs(instance, corpus)
    for dead in cleared:
        run = instance.get_run_by_id(dead.run_id)
        if run is None or run.status not in RUNNING_STATUSES:
            continue  # finished meanwhile
        mark_run_failed(instance, run, dead.reason)
        freed = free_pool_slots_of_run(instance, dead.run_id)
        # Its trainer died with it: an MLflow run it left RUNNING is ended too (tracking on).
        ended = None
        if dead.corpus and _started_step(instance, dead.run_id, TRAINING_STEP):
            ended = end_unfinished_run(dead.corpus, dead.run_id, dead.reason)
        if log is not None:
            log(
                f"run {dead.run_id} ({dead.corpus or '-'}): {dead.reason}; freed {freed} slot(s)"
                + (f"; {ended}" if ended else "")
            )
    return cleared


def tag_run_host(instance: DagsterInstance, run: DagsterRun) -> None:
    """Record the machine a run's steps execute on (once), so liveness can be judged."""
    if HOST_TAG not in run.tags:  # the first step's machine (k8s step pods differ)
        instance.add_run_tags(run.run_id, {HOST_TAG: this_host()})
