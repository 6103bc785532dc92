"""`LLM_PIPELINE_EXECUTOR=k8s`: the same definitions, one pod per step, GPUs only for training.

Kubernetes cannot run here. Each setting is loaded in a fresh interpreter (the executor and the
tags are chosen when the definitions load) and what the pods would be asked for is read back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from llm_pipeline.automation.deployment import GPU_RESOURCE, K8S_CONFIG_TAG

STEP_TAGS = """
import json
from llm_pipeline.definitions import defs
job = defs.resolve_job_def("corpus_pipeline_job")
print(json.dumps({"executor": job.executor_def.name,
                  "tags": {node.name: dict(node.tags) for node in job.nodes}}))
"""
# What dagster-k8s itself makes of each step's tags: the container config of the step's pod.
POD_CONFIG = """
import json
from dagster_k8s.job import get_user_defined_k8s_config
from llm_pipeline.definitions import defs
job = defs.resolve_job_def("corpus_pipeline_job")
print(json.dumps({"executor": job.executor_def.name, "containers": {
    node.name: get_user_defined_k8s_config(node.tags).container_config for node in job.nodes}}))
"""
ASSET_TAGS = """
import json
from llm_pipeline.assets import cleaned, model, raw, report, tokens
assets = [raw.raw_corpus, cleaned.cleaned_corpus, tokens.tokenizer, tokens.token_shards,
          model.trained_model, report.evaluation_report]
print(json.dumps({a.op.name: dict(a.op.tags) for a in assets}))
"""


def load(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_PIPELINE_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=300
    )


def test_training_step_alone_asks_its_pod_for_gpus() -> None:
    loaded = load(ASSET_TAGS, LLM_PIPELINE_EXECUTOR="k8s", LLM_PIPELINE_GPUS_PER_POD="2")
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    tags = json.loads(loaded.stdout)
    training = tags.pop("trained_model")
    assert json.loads(training[K8S_CONFIG_TAG]) == {
        "container_config": {"resources": {"limits": {GPU_RESOURCE: 2}}}
    }
    assert training["llm_pipeline/accelerator"] == "gpu"
    assert len(tags) == 5 and not any(K8S_CONFIG_TAG in t for t in tags.values())


def test_multiprocess_setting_loads_without_pod_config() -> None:
    loaded = load(STEP_TAGS)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    result = json.loads(loaded.stdout)
    assert result["executor"] == "multiprocess_gpu_limited"
    assert result["tags"]["trained_model"]["llm_pipeline/accelerator"] == "gpu"
    assert not any(K8S_CONFIG_TAG in tags for tags in result["tags"].values())


def test_bad_settings_are_named() -> None:
    loaded = load(STEP_TAGS, LLM_PIPELINE_EXECUTOR="slurm")
    assert loaded.returncode != 0
    assert "$LLM_PIPELINE_EXECUTOR: expected one of ('multiprocess', 'k8s'), got 'slurm'" in (
        loaded.stderr
    )
    loaded = load(ASSET_TAGS, LLM_PIPELINE_EXECUTOR="k8s", LLM_PIPELINE_GPUS_PER_POD="0")
    assert "$LLM_PIPELINE_GPUS_PER_POD: must be at least 1, got 0" in loaded.stderr


def test_k8s_setting_without_the_extra_says_what_to_install() -> None:
    # The dev install has dagster-k8s; a None entry in sys.modules makes its import fail as if
    # the extra were missing.
    loaded = load(
        "import sys; sys.modules['dagster_k8s'] = None\n" + STEP_TAGS, LLM_PIPELINE_EXECUTOR="k8s"
    )
    assert loaded.returncode != 0
    assert "needs dagster-k8s: pip install 'llm-pipeline[k8s]'" in loaded.stderr


def test_k8s_executor_gives_only_the_training_pod_a_gpu() -> None:
    loaded = load(POD_CONFIG, LLM_PIPELINE_EXECUTOR="k8s", LLM_PIPELINE_GPUS_PER_POD="4")
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    result = json.loads(loaded.stdout)
    assert result["executor"] == "k8s"
    containers = result["containers"]
    assert containers.pop("trained_model") == {"resources": {"limits": {GPU_RESOURCE: 4}}}
    assert len(containers) >= 5 and all(config == {} for config in containers.values())
