"""Jobs over the asset graph."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from llm_pipeline.partitions import corpus_partitions
from llm_pipeline.tags import GROUP_DATA, GROUP_MODEL

EXPORT_ASSET = "exported_model"

corpus_data_job = define_asset_job(
    name="corpus_data_job",
    selection=AssetSelection.groups(GROUP_DATA),
    partitions_def=corpus_partitions,
    description="Raw corpus → cleaned Parquet → tokenizer → token shards, with their checks.",
)

corpus_pipeline_job = define_asset_job(
    name="corpus_pipeline_job",
    # Exporting is asked for separately (corpus_export_job): only swiglu models export, and
    # the GGUF writer is an optional dependency.
    selection=AssetSelection.groups(GROUP_DATA, GROUP_MODEL) - AssetSelection.assets(EXPORT_ASSET),
    partitions_def=corpus_partitions,
    description="The whole graph for one corpus: data stages, training, evaluation report.",
)

corpus_export_job = define_asset_job(
    name="corpus_export_job",
    selection=AssetSelection.assets(EXPORT_ASSET),
    partitions_def=corpus_partitions,
    description="The corpus's trained model as a Hugging Face folder and a GGUF file.",
)
