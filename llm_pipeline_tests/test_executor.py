"""The GPU-tagged executor: GPU steps limited within and across runs, data steps in parallel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType

from llm_pipeline.automation.executor import ensure_gpu_pool, gpu_tag_limits
from llm_pipeline.definitions import defs
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline.tags import GPU_POOL, GPU_TAGS
from llm_pipeline_tests.test_model_pipeline import TINY_MODEL, make_structured_corpus
from llm_pipeline_tests.test_pipeline import FAST

# Long enough that, started together, the two runs' training steps would overlap without limits.
TRAINING_SECONDS = 4.0
LAUNCH = """
import sys
from dagster import DagsterInstance, execute_job, reconstructable
from llm_pipeline_tests.test_executor import shards_and_training_job, run_config

corpus = sys.argv[1]
with DagsterInstance.get() as instance:
    result = execute_job(
        reconstructable(shards_and_training_job),
        instance,
        run_config=run_config(),
        tags={"dagster/partition": corpus},
    )
    print(result.run_id)
    sys.exit(0 if result.success else 1)
"""


def pipeline_job():
    """The whole-graph job, loaded so the multiprocess executor can rebuild it in each step."""
    return defs.resolve_job_def("corpus_pipeline_job")


def shards_and_training_job():
    """The last data step and training, without checks: few step processes keep the test short."""
    keys = {AssetKey("token_shards"), AssetKey("trained_model")}
    return pipeline_job().get_subset(asset_selection=keys, asset_check_selection=set())


def run_config() -> dict:
    model = {**TINY_MODEL, "max_steps": 0, "max_seconds": TRAINING_SECONDS, "eval_interval": 10**6}
    return {"ops": {**FAST, "trained_model": {"config": model}}}


def step_windows(instance, run_id: str) -> dict[str, tuple[float, float]]:
    """Each step's (start, end) wall-clock times from the run's event log."""
    starts, ends = {}, {}
    for record in instance.all_logs(
        run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}
    ):
        event = record.dagster_event
        target = starts if event.event_type == DagsterEventType.STEP_START else ends
        target[event.step_key] = record.timestamp
    return {key: (starts[key], ends[key]) for key in starts}


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_training_steps_of_two_concurrent_runs_never_overlap(data_root: Path, instance) -> None:
    corpora = ["alpha", "beta"]
    for corpus in corpora:
        make_structured_corpus(data_root / "raw" / corpus, n_docs=60)
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, corpora)
    upstream = [AssetKey(name) for name in ("raw_corpus", "cleaned_corpus", "tokenizer")]
    for corpus in corpora:
        result = pipeline_job().execute_in_process(
            instance=instance,
            partition_key=corpus,
            run_config={"ops": FAST},
            asset_selection=upstream,
        )
        assert result.success
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("LLM_PIPELINE_GPU_SLOTS", None)
    launches = [
        subprocess.Popen(
            [sys.executable, "-c", LAUNCH, corpus],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for corpus in corpora
    ]
    outputs = [launch.communicate(timeout=600) for launch in launches]
    for launch, (_, err) in zip(launches, outputs):
        assert launch.returncode == 0, err[-3000:]
    run_ids = [out.split()[-1] for out, _ in outputs]

    windows = {run_id: step_windows(instance, run_id) for run_id in run_ids}
    training = [windows[run_id]["trained_model"] for run_id in run_ids]
    assert all(end - start >= TRAINING_SECONDS for start, end in training)
    assert not overlap(*training), f"training steps overlapped: {training}"
    # The instance pool did the waiting: a limit of one slot, none left held.
    info = instance.event_log_storage.get_concurrency_info(GPU_POOL)
    assert info.slot_count == 1 and info.active_slot_count == 0
    # Each run used the multiprocess executor: every step in its own process.
    for run_id in run_ids:
        pids = {
            record.dagster_event.pid
            for record in instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)
        }
        assert len(pids) == len(windows[run_id]) == 2


def test_executor_limits_gpu_tagged_steps_and_reads_the_slot_count(
    instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = pipeline_job()
    assert job.executor_def.name == "multiprocess_gpu_limited"
    tags = {node.name: node.tags for node in job.nodes}
    assert GPU_TAGS.items() <= tags.pop("trained_model").items()
    assert tags and not any(GPU_TAGS.items() <= node_tags.items() for node_tags in tags.values())
    assert gpu_tag_limits(2) == [{"key": "llm_pipeline/accelerator", "value": "gpu", "limit": 2}]

    # No explicit setting: a missing pool limit becomes 1, a limit set by the user stays.
    monkeypatch.delenv("LLM_PIPELINE_GPU_SLOTS", raising=False)
    assert ensure_gpu_pool(instance) == 1
    instance.event_log_storage.set_concurrency_slots(GPU_POOL, 3)
    assert ensure_gpu_pool(instance) == 3
    monkeypatch.setenv("LLM_PIPELINE_GPU_SLOTS", "2")
    assert ensure_gpu_pool(instance) == 2
    assert instance.event_log_storage.get_concurrency_info(GPU_POOL).slot_count == 2
    monkeypatch.setenv("LLM_PIPELINE_GPU_SLOTS", "zero")
    with pytest.raises(PipelineInputError, match="LLM_PIPELINE_GPU_SLOTS"):
        ensure_gpu_pool(instance)
