"""Each door in `llm_pipeline.dagster_compat`, exercised against the installed Dagster.

The project allows dagster >= 1.11 and these functions reach APIs Dagster does not publish, so a
Dagster release can move them. Each test calls one function the way the package does and, when
Dagster changed under it, fails with the function's name and the installed release, so the fix
starts in the right place.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import dagster
import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    InitExecutorContext,
    execute_job,
    job,
    op,
    reconstructable,
)

from llm_pipeline import dagster_compat
from llm_pipeline.automation.executor import gpu_limited_multiprocess_executor
from llm_pipeline.definitions import defs
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME


def call(function: Callable, *args, **kwargs):
    """Call a compat function; an error from Dagster becomes a failure that names the function."""
    try:
        return function(*args, **kwargs)
    except Exception as exc:
        pytest.fail(
            f"llm_pipeline.dagster_compat.{function.__name__} broke with dagster "
            f"{dagster.__version__} (checked with {dagster_compat.CHECKED_WITH}): "
            f"{type(exc).__name__}: {exc}"
        )


def test_is_valid_cron_string_matches_the_scheduler() -> None:
    check = dagster_compat.is_valid_cron_string
    accepted = ["0 3 * * 0", "30 2 * * 1-5", "*/15 * * * *", "0 0 1 */2 *", "@daily"]
    refused = ["0 25 * * *", "* * * * * *", "0 0 30 2 *", "every sunday", "", "0 3 * *"]
    assert [call(check, cron) for cron in accepted] == [True] * len(accepted), (
        "is_valid_cron_string refuses cron strings the scheduler takes"
    )
    assert [call(check, cron) for cron in refused] == [False] * len(refused), (
        "is_valid_cron_string accepts cron strings the scheduler refuses"
    )


def test_submit_asset_backfill_stores_what_the_daemon_runs(data_root: Path, instance) -> None:
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["a", "b"])
    selection = [AssetKey("token_shards"), AssetKey("trained_model")]
    submitted = call(
        dagster_compat.submit_asset_backfill,
        instance,
        asset_graph=defs.resolve_asset_graph(),
        partition_names=["a", "b"],
        asset_selection=selection,
        tags={"llm_pipeline/source": "test"},
        title="compat",
        description="corpora: a, b",
        run_config={"ops": {"trained_model": {"config": {"max_steps": 3}}}},
    )
    assert submitted.asset_selection == tuple(selection)
    stored = instance.get_backfill(submitted.backfill_id)
    assert stored is not None, "submit_asset_backfill: the instance has no such backfill"
    assert stored.is_asset_backfill and stored.title == "compat"
    assert stored.tags["llm_pipeline/source"] == "test"
    assert stored.run_config["ops"]["trained_model"]["config"]["max_steps"] == 3
    subset = stored.asset_backfill_data.target_subset
    targeted = {
        key: set(partitions.get_partition_keys())
        for key, partitions in subset.partitions_subsets_by_asset_key.items()
    }
    assert targeted == {key: {"a", "b"} for key in selection}


def test_pool_limit_functions_read_and_set_the_instance_pool(instance) -> None:
    assert call(dagster_compat.supports_pool_limits, instance) is True
    assert call(dagster_compat.get_pool_limit, instance, "compat_pool") is None
    call(dagster_compat.set_pool_limit, instance, "compat_pool", 3)
    limit = call(dagster_compat.get_pool_limit, instance, "compat_pool")
    assert limit == dagster_compat.PoolLimit(limit=3, user_set=True), limit
    # What Dagster enforces is the same number.
    assert instance.event_log_storage.get_concurrency_info("compat_pool").slot_count == 3


@op
def report_pid() -> int:
    return os.getpid()


@job(executor_def=gpu_limited_multiprocess_executor)
def wrapped_executor_job():
    report_pid()


def test_create_executor_starts_the_wrapped_multiprocess_executor(
    instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`create_executor` through the real path: a run under the GPU-limited executor, whose step
    runs in its own process, with the multiprocess executor's config filled in."""
    # The step process imports this module to rebuild the job.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    with execute_job(reconstructable(wrapped_executor_job), instance) as result:
        assert result.success, "create_executor: the wrapped multiprocess executor failed the run"
        step_pid = result.output_for_node("report_pid")
    assert step_pid != os.getpid()
    starts = list(instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_START))
    assert [start.dagster_event.pid for start in starts] == [step_pid]

    context = InitExecutorContext(
        job=reconstructable(wrapped_executor_job),
        executor_def=gpu_limited_multiprocess_executor,
        executor_config={},
        instance=instance,
    )
    created = call(
        dagster_compat.create_executor,
        dagster.multiprocess_executor,
        context,
        {"max_concurrent": 2, "tag_concurrency_limits": [], "retries": {"enabled": {}}},
    )
    assert isinstance(created, dagster.Executor), type(created)


def test_mark_run_failed_and_free_pool_slots_of_run(instance) -> None:
    from dagster import DagsterRun, DagsterRunStatus

    run = instance.add_run(DagsterRun(job_name="j", status=DagsterRunStatus.STARTED))
    storage = instance.event_log_storage
    storage.set_concurrency_slots("gpu", 1)
    storage.claim_concurrency_slot("gpu", run.run_id, "trained_model")
    assert call(dagster_compat.pool_slots_of_run, instance, run.run_id) == {"gpu": 1}
    call(dagster_compat.mark_run_failed, instance, run, "worker gone")
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    assert call(dagster_compat.free_pool_slots_of_run, instance, run.run_id) == 1
    assert call(dagster_compat.pool_slots_of_run, instance, run.run_id) == {}
