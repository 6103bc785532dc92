"""The one door to Dagster's internals: every use of an API Dagster does not publish is here.

Dagster 1.13 has no public way to submit an asset backfill from Python, to read or set an
instance pool's limit, to start one executor from inside another, or to mark a dead run failed
and free its pool slots; the project needs all of them.
Each use is one small function below whose docstring says which public API is missing and the
release it was checked against, and `llm_pipeline_tests/test_dagster_compat.py` exercises each
against the installed Dagster, so an upgrade that moves one fails that test by the function's
name instead of failing a user's run. The project's range allows dagster >= 1.11; the functions
were checked against 1.13.27. Private modules are imported inside the functions, so a change
breaks only the function that uses it, not the code location's load.

Everything else in the package uses Dagster's public API; `test_structure.py` checks that
`git grep -l "dagster\\._" llm_pipeline` lists only this module.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetKey,
    AssetsDefinition,
    DagsterInstance,
    DagsterInvalidDefinitionError,
    DagsterRun,
    ExecutorDefinition,
    InitExecutorContext,
    ScheduleDefinition,
)

if TYPE_CHECKING:
    from dagster import Executor

CHECKED_WITH = "1.13.27"


def is_valid_cron_string(cron: str) -> bool:
    """Whether Dagster's scheduler accepts `cron` (five fields; no 30 February).

    Public API only: `dagster._utils.schedules.is_valid_cron_string` is private, so this asks the
    public `ScheduleDefinition`, which refuses an invalid cron string when it is built — the
    exact check a schedule built from `cron` would face. Checked with dagster 1.13.27.
    """
    try:
        with warnings.catch_warnings():
            # An interval wider than its field (e.g. */90 minutes) is valid, with a warning.
            warnings.simplefilter("ignore")
            ScheduleDefinition(name="cron_check", cron_schedule=cron, job_name="cron_check")
    except DagsterInvalidDefinitionError:
        return False
    return True


@dataclass(frozen=True)
class SubmittedBackfill:
    """What the caller needs back from a submitted backfill: its id and the assets it targets."""

    backfill_id: str
    asset_selection: tuple[AssetKey, ...]


def submit_asset_backfill(
    instance: DagsterInstance,
    *,
    asset_graph: Any,
    partition_names: Sequence[str],
    asset_selection: Sequence[AssetKey],
    tags: Mapping[str, str],
    title: str,
    description: str,
    run_config: Mapping[str, Any] | None,
) -> SubmittedBackfill:
    """Store an asset backfill of `asset_selection` × `partition_names` for the daemon to run.

    Exactly what the UI's "Materialize" dialog stores. No public API: Dagster 1.13 launches
    backfills only through GraphQL (a running webserver); the Python route is the private
    `PartitionBackfill.from_asset_partitions` (`dagster._core.execution.backfill`), with
    `dagster._core.utils.make_new_backfill_id` and `dagster._time.get_current_timestamp`, then
    `instance.add_backfill`. `asset_graph` is `Definitions.resolve_asset_graph()`. Checked with
    dagster 1.13.27.
    """
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id
    from dagster._time import get_current_timestamp

    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=asset_graph,
        partition_names=list(partition_names),
        asset_selection=list(asset_selection),
        backfill_timestamp=get_current_timestamp(),
        tags=dict(tags),
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=title,
        description=description,
        run_config=run_config,
    )
    instance.add_backfill(backfill)
    return SubmittedBackfill(backfill.backfill_id, tuple(backfill.asset_selection))


@dataclass(frozen=True)
class PoolLimit:
    """An instance pool's limit, and whether someone set it (UI, CLI) or it came by default."""

    limit: int
    user_set: bool


def supports_pool_limits(instance: DagsterInstance) -> bool:
    """Whether the instance's storage keeps concurrency pools (sqlite and postgres do).

    No public API: read from the event log storage's `supports_global_concurrency_limits`
    property. Checked with dagster 1.13.27.
    """
    return bool(instance.event_log_storage.supports_global_concurrency_limits)


def get_pool_limit(instance: DagsterInstance, pool: str) -> PoolLimit | None:
    """The limit of `pool` on the instance, or None where it has none.

    No public API: `dagster instance concurrency get` prints it, and the Python route is the
    event log storage's `get_pool_limits()` (records with `name`, `limit`, `from_default`).
    Checked with dagster 1.13.27.
    """
    for record in instance.event_log_storage.get_pool_limits():
        if record.name == pool:
            return PoolLimit(limit=int(record.limit), user_set=not record.from_default)
    return None


def set_pool_limit(instance: DagsterInstance, pool: str, limit: int) -> None:
    """Give `pool` `limit` slots on the instance, as `dagster instance concurrency set` does.

    No public API: the CLI and the UI call the event log storage's `set_concurrency_slots`.
    Checked with dagster 1.13.27.
    """
    instance.event_log_storage.set_concurrency_slots(pool, limit)


def create_executor(
    executor_def: ExecutorDefinition,
    init_context: InitExecutorContext,
    executor_config: Mapping[str, object],
) -> Executor:
    """Start `executor_def` with `executor_config` for the run `init_context` belongs to.

    How one executor wraps another (here: the multiprocess executor, with GPU limits filled in).
    No public API: `ExecutorDefinition.configured` fixes the config when the definitions load,
    but the limits and the pool are decided when the run starts, so this builds the
    `InitExecutorContext` by hand and calls the definition's `executor_creation_fn`. Checked
    with dagster 1.13.27.
    """
    return executor_def.executor_creation_fn(
        InitExecutorContext(
            job=init_context.job,
            executor_def=executor_def,
            executor_config=executor_config,
            instance=init_context.instance,
        )
    )


def mark_run_failed(instance: DagsterInstance, run: DagsterRun, message: str) -> None:
    """Record `run` as FAILURE with `message` (a RUN_FAILURE event), from outside the run.

    What Dagster's own run monitoring does to a run whose worker died. Not in the API docs:
    `DagsterInstance.report_run_failed(run, message)`. Checked with dagster 1.13.27.
    """
    instance.report_run_failed(run, message)


def pool_slots_of_run(instance: DagsterInstance, run_id: str) -> dict[str, int]:
    """Slots `run_id` holds or waits for, per pool (claimed slots, unassigned pending steps).

    No public API: `dagster instance concurrency get` prints totals only; the Python route is the
    event log storage's `get_concurrency_keys()` and `get_concurrency_info(pool)` (its
    `claimed_slots` and `pending_steps`, each with a `run_id`). Checked with dagster 1.13.27.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    held = {}
    for pool in storage.get_concurrency_keys():
        info = storage.get_concurrency_info(pool)
        count = sum(1 for slot in info.claimed_slots if slot.run_id == run_id)
        count += sum(
            1
            for step in info.pending_steps
            if step.run_id == run_id and step.assigned_timestamp is None  # still waiting
        )
        if count:
            held[pool] = count
    return held


def free_pool_slots_of_run(instance: DagsterInstance, run_id: str) -> int:
    """Free every pool slot `run_id` claimed (and drop its queued claims); returns how many.

    What the daemon's `free_slots_after_run_end_seconds` does for finished runs, done now
    instead of after a delay and without a daemon. No public API: the event log storage's
    `free_concurrency_slots_for_run(run_id)`. Checked with dagster 1.13.27.
    """
    held = sum(pool_slots_of_run(instance, run_id).values())
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return held


def asset_config_class(asset: AssetsDefinition) -> type | None:
    """The Pythonic `Config` class an asset's function takes as `config`, or None.

    Dagster keeps only the config *schema* on the op; the class is read from the decorated
    function's annotations (`DecoratedOpFunction.decorated_fn`, not a public attribute)."""
    import typing

    if not asset.is_executable:  # an external or source asset: no function, no config
        return None
    function = getattr(asset.op.compute_fn, "decorated_fn", None)
    if function is None:
        return None
    return typing.get_type_hints(function).get("config")


def run_assets(context: Any) -> list[AssetsDefinition]:
    """The assets a running step can see: its repository's, or (a job executed on its own, with
    no repository) its job's. `JobDefinition.asset_layer` is not a documented attribute."""
    try:
        return list(context.repository_def.assets_defs_by_key.values())
    except Exception:
        graph = context.job_def.asset_layer.asset_graph
        return [assets for assets in graph.assets_defs if assets.keys]


def workspace_process_context(instance: DagsterInstance, workspace_file: str) -> Any:
    """The webserver's workspace context for `workspace.yaml` (a context manager), what
    `dagster-webserver -w workspace.yaml` builds before serving its app.

    Missing public API (1.13.27): `dagster_webserver` publishes the app factory
    (`create_app_from_workspace_process_context`) but not a way to build its argument; the
    `llm-pipeline ui` command needs both to put its loopback guard (ui_guard.py) in front.
    """
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_webserver.version import __version__

    return WorkspaceProcessContext(
        instance, version=__version__, workspace_load_target=WorkspaceFileTarget([workspace_file])
    )


def set_instigator_running(
    instance: DagsterInstance,
    module_name: str,
    location_name: str,
    instigator: str,
    running: bool,
    working_directory: str | None = None,
) -> bool:
    """Turn a schedule or sensor on or off, as `dagster schedule start` / `sensor start` would,
    and return whether it was running before.

    Missing public API (1.13.27): the instance's `start_schedule`/`start_sensor` take a
    `RemoteSchedule`/`RemoteSensor`, which only a loaded code location hands out; the `dagster`
    CLI loads one through a gRPC server process (~18 s here). This loads it in-process
    (`InProcessCodeLocationOrigin`) under the workspace's `location_name`, so the stored state
    has the selector id (location, repository, name) the daemon and the UI look it up by.
    """
    import sys

    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.scheduler.instigation import InstigatorStatus
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name=module_name,
            working_directory=working_directory,
        ),
        location_name=location_name,
    )
    with origin.create_location(instance) as location:
        [repository] = location.get_repositories().values()
        if repository.has_schedule(instigator):
            remote: Any = repository.get_schedule(instigator)
            start, stop = instance.start_schedule, instance.stop_schedule
        else:
            remote = repository.get_sensor(instigator)
            start, stop = instance.start_sensor, instance.stop_sensor
        state = instance.get_instigator_state(remote.get_remote_origin_id(), remote.selector_id)
        status = state.status if state is not None else None
        was_running = status == InstigatorStatus.RUNNING or (
            status is None and remote.default_status.value == "RUNNING"
        )
        if running and not was_running:
            start(remote)
        elif not running and was_running:
            stop(remote.get_remote_origin_id(), remote.selector_id, remote)
    return was_running
