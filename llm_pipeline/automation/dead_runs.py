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

A pid only means something inside the PID namespace that recorded it: `doctor` run in a container
or under `unshare --pid` sees other processes under the same numbers, or none. The first step
also tags the run with its PID namespace; a run from another namespace, or a process the caller
may not inspect (`AccessDenied`), is *unknown*, never dead: it is listed as such and never
cleared. (A run tagged before namespaces were recorded is judged by its pids, as before.)

A dead run is marked FAILURE with the reason and its pool slots are freed (and, with tracking
on, an MLflow run its trainer left RUNNING is marked KILLED); this happens when a
new run starts (`ensure_gpu_pool`), at each `retrain_schedule` tick and with
`llm-pipeline doctor`. The private calls this takes are in `llm_pipeline.dagster_compat`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import psutil
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from llm_pipeline.dagster_compat import free_pool_slots_of_run, mark_run_failed
from llm_pipeline.lm.tracking.records import end_unfinished_run

HOST_TAG = "llm_pipeline/host"
PID_NAMESPACE_TAG = "llm_pipeline/pid_namespace"
PARTITION_TAG = "dagster/partition"
# Statuses in which a run's own process is supposed to be alive. STARTING belongs to the
# launcher and to Dagster's `start_timeout_seconds`; QUEUED runs have no process yet.
RUNNING_STATUSES = [DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
_CLOCK_SLACK_S = 2.0


def this_host() -> str:
    return socket.gethostname()


def this_pid_namespace() -> str | None:
    """This process's PID namespace (`pid:[4026531836]`), or None where it cannot be read."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


@dataclass(frozen=True)
class DeadRun:
    """A run whose worker is gone (or, `unknown`, cannot be seen from here), and why."""

    run_id: str
    job_name: str
    corpus: str | None
    status: str
    reason: str
    unknown: bool = False


def _process_state(pid: int, since: float) -> str:
    """`alive` (a live process that already existed at `since`: no reused pid), `gone`, or
    `unknown` when the process table will not say (no permission to inspect it)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return "gone"
        return "alive" if process.create_time() <= since + _CLOCK_SLACK_S else "gone"
    except psutil.AccessDenied:
        return "unknown"
    except (psutil.NoSuchProcess, ValueError):
        return "gone"


def run_processes(instance: DagsterInstance, run_id: str) -> dict[int, float]:
    """The pids that wrote the run's start events, each with its first event's time."""
    types = {DagsterEventType.RUN_START, DagsterEventType.STEP_START}
    pids: dict[int, float] = {}
    for entry in instance.all_logs(run_id, of_type=types):
        pid = entry.dagster_event.pid if entry.dagster_event else None
        if pid is not None and pid not in pids:
            pids[int(pid)] = entry.timestamp
    return pids


def judge_run(instance: DagsterInstance, run: DagsterRun) -> tuple[str, str | None]:
    """(`alive` | `dead` | `unknown`, reason): whether `run`'s processes are gone, as far as
    this process can see. Another machine's or another PID namespace's run, or a process that
    may not be inspected, is `unknown`: only what is seen to be gone is called dead."""
    host = run.tags.get(HOST_TAG)
    if host is not None and host != this_host():
        return "alive", None  # another machine's run: only Dagster's run monitoring can judge
    recorded, ours = run.tags.get(PID_NAMESPACE_TAG), this_pid_namespace()
    if recorded is not None and recorded != ours:
        return "unknown", (
            f"its processes are in PID namespace {recorded}, this command runs in "
            f"{ours or 'an unknown one'}: their pids cannot be checked from here; left as it is"
        )
    pids = run_processes(instance, run.run_id)
    if not pids:
        return "alive", None  # no process recorded yet: the launcher's (start_timeout_seconds)
    states = {pid: _process_state(pid, since) for pid, since in pids.items()}
    if "alive" in states.values():
        return "alive", None
    listed = ", ".join(str(pid) for pid in sorted(pids))
    if "unknown" in states.values():
        hidden = ", ".join(str(pid) for pid, state in sorted(states.items()) if state == "unknown")
        return "unknown", f"no permission to inspect pid {hidden}; left as it is"
    return "dead", (
        f"run worker gone: no process of this run is alive (pid {listed} on {host or this_host()}"
        "); it was killed, ran out of memory or the machine restarted. Marked failed by "
        "llm-pipeline; rerun it (training resumes from its last saved state)"
    )


def why_dead(instance: DagsterInstance, run: DagsterRun) -> str | None:
    """The reason `run` is dead, or None when it may be alive (or cannot be judged here)."""
    state, reason = judge_run(instance, run)
    return reason if state == "dead" else None


def survey_runs(
    instance: DagsterInstance, corpus: str | None = None
) -> tuple[list[DeadRun], list[DeadRun]]:
    """(dead, unknown): the running runs (of `corpus`, if given) seen to be dead, and those
    whose processes cannot be seen from here."""
    tags = {PARTITION_TAG: corpus} if corpus else None
    found: dict[str, list[DeadRun]] = {"dead": [], "unknown": []}
    for run in instance.get_runs(RunsFilter(statuses=RUNNING_STATUSES, tags=tags)):
        state, reason = judge_run(instance, run)
        if state in found and reason is not None:
            found[state].append(
                DeadRun(
                    run.run_id,
                    run.job_name,
                    run.tags.get(PARTITION_TAG),
                    run.status.value,
                    reason,
                    unknown=state == "unknown",
                )
            )
    return found["dead"], found["unknown"]


def find_dead_runs(instance: DagsterInstance, corpus: str | None = None) -> list[DeadRun]:
    """Runs the instance calls running whose processes are all seen to be gone."""
    return survey_runs(instance, corpus)[0]


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
    """Record the machine and PID namespace a run's steps execute in (once), so liveness can
    be judged."""
    if HOST_TAG not in run.tags:  # the first step's machine (k8s step pods differ)
        tags = {HOST_TAG: this_host()}
        namespace = this_pid_namespace()
        if namespace is not None:  # pids mean something only inside their namespace
            tags[PID_NAMESPACE_TAG] = namespace
        instance.add_run_tags(run.run_id, tags)
