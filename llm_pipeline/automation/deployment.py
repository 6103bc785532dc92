"""Deployment settings read from the environment when the definitions load.

No Dagster import here: the asset modules read these to tag the training step, and the executor
module reads them to limit GPU steps.
"""

import os

from llm_pipeline.errors import PipelineInputError

EXECUTOR_ENV = "LLM_PIPELINE_EXECUTOR"
GPU_SLOTS_ENV = "LLM_PIPELINE_GPU_SLOTS"
GPUS_PER_POD_ENV = "LLM_PIPELINE_GPUS_PER_POD"
EXECUTORS = ("multiprocess", "k8s")
# The tag dagster-k8s reads for a step's pod and container settings.
K8S_CONFIG_TAG = "dagster-k8s/config"
GPU_RESOURCE = "nvidia.com/gpu"


def _positive_int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise PipelineInputError(f"${name}: expected a whole number, got {raw!r}") from None
    if value < 1:
        raise PipelineInputError(f"${name}: must be at least 1, got {value}")
    return value


def gpu_slots() -> int:
    """How many GPU-tagged steps may run at once (`LLM_PIPELINE_GPU_SLOTS`, default 1)."""
    return _positive_int_env(GPU_SLOTS_ENV, 1)


def gpus_per_pod() -> int:
    """GPUs the training step's pod asks for on Kubernetes (`LLM_PIPELINE_GPUS_PER_POD`, 1)."""
    return _positive_int_env(GPUS_PER_POD_ENV, 1)


def executor_kind() -> str:
    """`multiprocess` (default) or `k8s`, from `LLM_PIPELINE_EXECUTOR`."""
    kind = os.environ.get(EXECUTOR_ENV, "").strip().lower() or "multiprocess"
    if kind not in EXECUTORS:
        raise PipelineInputError(f"${EXECUTOR_ENV}: expected one of {EXECUTORS}, got {kind!r}")
    return kind


def k8s_gpu_tags(gpus: int) -> dict[str, dict]:
    """A `dagster-k8s/config` tag whose container asks for `gpus` NVIDIA GPUs.

    Requests equal limits for extended resources such as GPUs, so the limit alone is enough;
    the scheduler then places the pod only on a node with that many free GPUs.
    """
    return {K8S_CONFIG_TAG: {"container_config": {"resources": {"limits": {GPU_RESOURCE: gpus}}}}}
