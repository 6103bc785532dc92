"""The one `Definitions` object; `workspace.yaml` and `dagster dev` load it.

The stages come from their registry (`stages.ASSETS`); the checks, jobs, schedules and sensors
are listed here.
"""

from __future__ import annotations

from dagster import Definitions

from llm_pipeline.automation.executor import pipeline_executor
from llm_pipeline.automation.jobs import corpus_data_job, corpus_export_job, corpus_pipeline_job
from llm_pipeline.automation.schedules import retrain_schedule
from llm_pipeline.automation.sensors import new_corpus_sensor
from llm_pipeline.checks.cleaned import cleaned_corpus_expectations
from llm_pipeline.checks.model import (
    beats_unigram_baseline,
    checkpoint_loads_and_generates,
    losses_finite,
)
from llm_pipeline.checks.shards import (
    documents_match_end_of_text,
    shards_match_tokenizer,
    token_counts_match_files,
    token_ids_in_vocab,
    tokenizer_round_trips,
    validation_split_not_empty,
)
from llm_pipeline.checks.split import split_expectations, split_leakage, split_ngram_overlap
from llm_pipeline.resources import StorageResource
from llm_pipeline.stages import ASSETS

defs = Definitions(
    assets=list(ASSETS),
    asset_checks=[
        cleaned_corpus_expectations,
        split_expectations,
        split_leakage,
        split_ngram_overlap,
        token_ids_in_vocab,
        validation_split_not_empty,
        token_counts_match_files,
        tokenizer_round_trips,
        documents_match_end_of_text,
        shards_match_tokenizer,
        losses_finite,
        beats_unigram_baseline,
        checkpoint_loads_and_generates,
    ],
    jobs=[corpus_data_job, corpus_pipeline_job, corpus_export_job],
    schedules=[retrain_schedule],
    sensors=[new_corpus_sensor],
    resources={"storage": StorageResource()},
    # Multiprocess with a GPU step limit, or a pod per step on Kubernetes ($LLM_PIPELINE_EXECUTOR).
    executor=pipeline_executor(),
)
