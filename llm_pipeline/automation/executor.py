"""The executor every job runs under, and the instance pool that keeps GPU steps apart.

Two limits, because Dagster scopes them differently:

- *Within a run*, the multiprocess executor runs data steps in parallel and allows at most
  `LLM_PIPELINE_GPU_SLOTS` (default 1) steps tagged `llm_pipeline/accelerator=gpu` at once
  (`tag_concurrency_limits`).
- *Across runs* (two corpora trained at the same time, a backfill), the executor's tag limit does
  not see the other run. The training asset is in the `gpu` concurrency pool; each run's executor
  claims a slot of that pool from the instance before it starts the step, so at most
  `LLM_PIPELINE_GPU_SLOTS` training steps run on the instance at once. Dagster only enforces a
  pool that has a limit, so the executor sets one on the instance when it starts (see
  `ensure_gpu_pool`); `dagster instance concurrency set gpu N` or the UI's concurrency page
  change it, and an explicit `LLM_PIPELINE_GPU_SLOTS` wins over them. Dagster has no public
  API for pool limits or for wrapping an executor; those calls go through
  `llm_pipeline.dagster_compat`.

With `LLM_PIPELINE_EXECUTOR=k8s` the jobs use dagster-k8s's `k8s_job_executor` instead (one pod
per step); the training step's `dagster-k8s/config` tag asks its pod for GPUs.
"""

import logging
import os
import time

from dagster import (
    DagsterInstance,
    ExecutorDefinition,
    InitExecutorContext,
    executor,
    multiprocess_executor,
)

from llm_pipeline.automation.dead_runs import clear_dead_runs
from llm_pipeline.automation.deployment import (
    EXECUTOR_ENV,
    GPU_SLOTS_ENV,
    executor_kind,
    gpu_slots,
)
from llm_pipeline.dagster_compat import (
    create_executor,
    get_pool_limit,
    set_pool_limit,
    supports_pool_limits,
)
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.tags import GPU_POOL, GPU_TAGS

log = logging.getLogger(__name__)


def gpu_tag_limits(slots: int) -> list[dict]:
    """The multiprocess executor's `tag_concurrency_limits` for GPU-tagged steps."""
    return [{"key": key, "value": value, "limit": slots} for key, value in GPU_TAGS.items()]


def ensure_gpu_pool(instance: DagsterInstance) -> int | None:
    """Give the instance's `gpu` pool a limit so Dagster enforces it across runs.

    An explicit `LLM_PIPELINE_GPU_SLOTS` always sets the limit; otherwise a limit already set on
    the instance (UI, `dagster instance concurrency set`) is kept and a missing one becomes 1.
    Returns the limit in force, or None where the instance's storage has no pools.
    """
    clear_dead_runs(instance, log=log.warning)  # a killed run must not keep its slot
    if not supports_pool_limits(instance):
        return None
    explicit = os.environ.get(GPU_SLOTS_ENV, "").strip()
    wanted = gpu_slots()
    for attempt in range(3):
        current = get_pool_limit(instance, GPU_POOL)
        if current is not None and current.user_set and (not explicit or current.limit == wanted):
            return current.limit
        try:
            set_pool_limit(instance, GPU_POOL, wanted)
            return wanted
        except Exception:
            # Two runs starting together race to create the pool's row; the loser re-reads.
            if attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))
    return wanted


@executor(
    name="multiprocess_gpu_limited",
    config_schema=multiprocess_executor.config_schema,
    requirements=multiprocess_executor.get_requirements({}),
)
def gpu_limited_multiprocess_executor(init_context: InitExecutorContext):
    """Each step in its own process; at most `LLM_PIPELINE_GPU_SLOTS` GPU steps at once.

    Config is the multiprocess executor's; `tag_concurrency_limits` defaults to the GPU limit
    (set it in the launchpad to override). Starting the executor also sets the instance's `gpu`
    pool limit, so training steps of concurrent runs wait for each other.
    """
    config = dict(init_context.executor_config)
    if not config.get("tag_concurrency_limits"):
        config["tag_concurrency_limits"] = gpu_tag_limits(gpu_slots())
    ensure_gpu_pool(init_context.instance)
    return create_executor(multiprocess_executor, init_context, config)


def pipeline_executor() -> ExecutorDefinition:
    """The executor chosen by `LLM_PIPELINE_EXECUTOR` (read when the definitions load)."""
    if executor_kind() == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError:
            raise PipelineInputError(
                f"${EXECUTOR_ENV}=k8s needs dagster-k8s: pip install 'llm-pipeline[k8s]'"
            ) from None
        return k8s_job_executor
    return gpu_limited_multiprocess_executor
