"""The one `Definitions` object; `workspace.yaml` and `dagster dev` load it."""

from __future__ import annotations

from dagster import Definitions

from llm_pipeline.assets.cleaned import cleaned_corpus
from llm_pipeline.assets.model import trained_model
from llm_pipeline.assets.raw import raw_corpus
from llm_pipeline.assets.report import evaluation_report
from llm_pipeline.assets.tokens import token_shards, tokenizer
from llm_pipeline.automation.jobs import corpus_data_job, corpus_pipeline_job
from llm_pipeline.checks.cleaned import cleaned_corpus_expectations
from llm_pipeline.checks.model import (
    beats_unigram_baseline,
    checkpoint_loads_and_generates,
    losses_finite,
)
from llm_pipeline.checks.shards import (
    token_counts_match_files,
    token_ids_in_vocab,
    tokenizer_round_trips,
    validation_split_not_empty,
)
from llm_pipeline.resources import StorageResource

defs = Definitions(
    assets=[raw_corpus, cleaned_corpus, tokenizer, token_shards, trained_model, evaluation_report],
    asset_checks=[
        cleaned_corpus_expectations,
        token_ids_in_vocab,
        validation_split_not_empty,
        token_counts_match_files,
        tokenizer_round_trips,
        losses_finite,
        beats_unigram_baseline,
        checkpoint_loads_and_generates,
    ],
    jobs=[corpus_data_job, corpus_pipeline_job],
    resources={"storage": StorageResource()},
)
