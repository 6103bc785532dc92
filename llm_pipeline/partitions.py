"""The `corpus` dynamic partitions: one partition per corpus, its key a validated path segment."""

from dagster import DynamicPartitionsDefinition, Failure

from llm_pipeline.errors import InvalidCorpusName
from llm_pipeline.paths import validate_corpus_name

CORPUS_PARTITIONS_NAME = "corpus"
corpus_partitions = DynamicPartitionsDefinition(name=CORPUS_PARTITIONS_NAME)


def corpus_key(context) -> str:
    """The run's corpus name, validated before it is ever used as a path segment."""
    key = context.partition_key
    try:
        return validate_corpus_name(key)
    except InvalidCorpusName as exc:
        raise Failure(description=str(exc)) from None
