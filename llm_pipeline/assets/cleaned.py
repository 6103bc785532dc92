"""`cleaned_corpus`: normalised, filtered, exactly-deduplicated documents as Parquet."""

import os
from dataclasses import asdict

from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from llm_pipeline.assets._common import GROUP_DATA, clear_errors
from llm_pipeline.assets.raw import raw_corpus
from llm_pipeline.atomic import atomic_dir, write_json_atomic
from llm_pipeline.partitions import corpus_key, corpus_partitions
from llm_pipeline.resources import StorageResource
from llm_pipeline.text.clean import CleaningConfig, clean_documents, iter_document_batches
from llm_pipeline.text.store import parquet_parts

CLEANING_FILE = "cleaning.json"


class CleanedCorpusConfig(Config):
    """Filter thresholds (0, or 1.0 for a fraction, turns a filter off)."""

    min_chars: int = Field(default=20, ge=0, description="Drop documents shorter than this.")
    max_chars: int = Field(default=100_000, ge=0, description="Drop documents longer than this.")
    min_words: int = Field(default=3, ge=0, description="Drop documents with fewer words.")
    max_non_alnum_fraction: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Drop documents whose visible characters are mostly symbols.",
    )
    max_duplicate_line_fraction: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Drop documents in which more of the lines repeat than this.",
    )
    workers: int = Field(default=0, ge=0, description="Cleaning processes; 0 = one per CPU core.")

    def cleaning(self) -> CleaningConfig:
        return CleaningConfig(
            min_chars=self.min_chars,
            max_chars=self.max_chars,
            min_words=self.min_words,
            max_non_alnum_fraction=self.max_non_alnum_fraction,
            max_duplicate_line_fraction=self.max_duplicate_line_fraction,
        )


@asset(
    partitions_def=corpus_partitions,
    deps=[raw_corpus],
    group_name=GROUP_DATA,
    kinds={"parquet"},
    code_version="1",
)
@clear_errors
def cleaned_corpus(
    context: AssetExecutionContext, config: CleanedCorpusConfig, storage: StorageResource
) -> MaterializeResult:
    """Documents after Unicode/whitespace normalisation, quality filters and exact dedup.

    Streams batch by batch; output `data/cleaned/<corpus>/part-*.parquet` (zstd) with `doc_id`
    (content hash), `text`, `n_chars`, `source`.
    """
    corpus = corpus_key(context)
    inputs = parquet_parts(storage.documents(corpus))
    if not inputs:
        raise Failure(description=f"corpus {corpus!r}: raw_corpus has no output; materialize it")
    cleaning = config.cleaning()
    workers = config.workers or os.cpu_count() or 1
    out = storage.cleaned(corpus)
    with atomic_dir(out) as tmp:
        stats = clean_documents(iter_document_batches(inputs), tmp, cleaning, workers=workers)
        if stats.docs_out == 0:
            raise Failure(
                description=f"corpus {corpus!r}: no documents left after cleaning "
                f"({stats.docs_in} in; dropped: {stats.dropped}). Relax the filters in the "
                "cleaned_corpus config or add more text."
            )
        write_json_atomic(
            tmp / CLEANING_FILE, {"config": asdict(cleaning), "stats": stats.to_dict()}
        )
    context.log.info(
        f"cleaned {stats.docs_in} → {stats.docs_out} documents at {stats.mb_per_s:.1f} MB/s"
    )
    return MaterializeResult(
        metadata={
            "docs_in": stats.docs_in,
            "docs_out": stats.docs_out,
            "bytes_in": stats.bytes_in,
            "bytes_out": stats.bytes_out,
            "dropped": MetadataValue.json(stats.dropped),
            **{f"dropped_{name}": count for name, count in stats.dropped.items()},
            "throughput_mb_per_s": round(stats.mb_per_s, 2),
            "parts": stats.parts,
            "path": MetadataValue.path(str(out)),
        }
    )
