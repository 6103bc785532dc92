"""Jobs over the asset graph: selected by group, so a new stage joins its group's jobs."""

from __future__ import annotations

from dagster import AssetSelection, HookContext, define_asset_job, failure_hook, success_hook

from llm_pipeline.memory import release_memory
from llm_pipeline.partitions import corpus_partitions
from llm_pipeline.tags import GROUP_DATA, GROUP_MODEL, ON_REQUEST_TAG

# Stages a user asks for, outside `corpus_pipeline_job` (`exported_model`: only swiglu models
# export, and the GGUF writer is an optional dependency): they carry the tag themselves.
ON_REQUEST = AssetSelection.tag(*ON_REQUEST_TAG)


@success_hook(name="release_memory_after_step")
def _release_after_success(context: HookContext) -> None:
    """Steps of one run may share a process (the CLI runs in-process): see llm_pipeline/memory."""
    release_memory()


@failure_hook(name="release_memory_after_failed_step")
def _release_after_failure(context: HookContext) -> None:
    release_memory()


RELEASE_HOOKS = {_release_after_success, _release_after_failure}

corpus_data_job = define_asset_job(
    name="corpus_data_job",
    selection=AssetSelection.groups(GROUP_DATA),
    partitions_def=corpus_partitions,
    hooks=RELEASE_HOOKS,
    description="Raw corpus → cleaned Parquet → tokenizer → token shards, with their checks.",
)

corpus_pipeline_job = define_asset_job(
    name="corpus_pipeline_job",
    selection=AssetSelection.groups(GROUP_DATA, GROUP_MODEL) - ON_REQUEST,
    partitions_def=corpus_partitions,
    hooks=RELEASE_HOOKS,
    description="The whole graph for one corpus: data stages, training, evaluation report.",
)

corpus_export_job = define_asset_job(
    name="corpus_export_job",
    selection=ON_REQUEST,
    partitions_def=corpus_partitions,
    hooks=RELEASE_HOOKS,
    description="The corpus's trained model as a Hugging Face folder and a GGUF file.",
)
