"""The two text stages as one call each, without Dagster: `read_corpus` (raw files → document
table) and `clean_corpus` (documents → cleaned, split parts with `split.json` and
`cleaning.json`).

The `raw_corpus` and `cleaned_corpus` assets are thin shells over these; a benchmark or a
notebook runs the same stage with the same checks, files and failure messages. Progress lines
go to `emit` and warnings a person should read to `warn` (in a Dagster run, `context.log.info`
and `context.log.warning`); an input the stage refuses raises `PipelineInputError` with the
message the run shows.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq

from llm_pipeline.atomic import atomic_dir, write_json_atomic
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.progress import Emit, Progress, batch_size_for
from llm_pipeline.text.advice import cleaning_advice
from llm_pipeline.text.clean import (
    DROPPED_DIR,
    CleaningConfig,
    CleaningStats,
    clean_documents,
    iter_document_batches,
)
from llm_pipeline.text.filters.profiles import PROFILES
from llm_pipeline.text.funnel import CLEANING_FILE
from llm_pipeline.text.read.manifest import RawManifest, read_raw_manifest
from llm_pipeline.text.read.readers import (
    SUPPORTED_DESCRIPTION,
    Document,
    ReadLimits,
    ReadStats,
    corpus_files,
    fingerprint_files,
    iter_documents,
)
from llm_pipeline.text.settings import RawCorpusSettings
from llm_pipeline.text.split.leakage import Leakage, measure_leakage
from llm_pipeline.text.split.sides import SplitSummary
from llm_pipeline.text.split.split_file import SplitFile, parts_sha256, read_split, write_split_file
from llm_pipeline.text.store import parquet_parts, write_documents

# Documents per cleaning batch (the core's default); small corpora get smaller batches.
DOCUMENT_BATCH = 2048


@dataclass(frozen=True)
class RawCorpus:
    """What reading a corpus's files found: how many files, their fingerprint (paths and
    bytes) and the reader's counts and problems."""

    files: int
    fingerprint: str
    stats: ReadStats


def _file_sizes(folder: Path, files: list) -> dict[str, int]:
    """Bytes on disk of each file, by its path under `folder` (`Document.source`); links are not
    followed and an unreadable entry counts 0 (the reader skips it and names it)."""
    sizes = {}
    for path in files:
        try:
            sizes[Path(path).relative_to(folder).as_posix()] = os.lstat(path).st_size
        except (OSError, ValueError):
            continue
    return sizes


def counted_documents(
    documents: Iterator[Document], stats: ReadStats, progress: Progress, sizes: dict[str, int]
) -> Iterator[Document]:
    """Pass `documents` through, advancing `progress` in bytes of the files on disk (its total):
    for JSONL the reader's position in the file (exact, compressed or not); otherwise the text
    bytes it counted, at most the file's size; and the rest of a file once the next one
    starts. Text and file sizes differ (JSONL's quoting and keys, compressed or Parquet files),
    so counting text alone stopped JSONL corpora near two thirds before done. `sizes` maps each
    file's `Document.source` to its size."""
    seen = 0
    source, in_file = None, 0
    for document in documents:
        yield document
        if document.source != source:
            if source is not None:
                progress.advance(0, max(sizes.get(source, 0) - in_file, 0))
            source, in_file = document.source, 0
        size = sizes.get(source, 0)
        if stats.file_position is not None:
            step = max(min(stats.file_position, size) - in_file, 0)
        else:
            step = max(min(stats.bytes - seen, size - in_file), 0)
        seen = stats.bytes
        in_file += step
        progress.advance(1, step)
    progress.advance(0, max(progress.total_bytes - progress.bytes, 0))  # skipped files too


def read_corpus(
    folder: Path, out: Path, corpus: str, settings: RawCorpusSettings, emit: Emit | None = None
) -> RawCorpus:
    """Read the files under `folder` into the document table `out` (with its raw manifest),
    published whole: a run that finds nothing usable leaves the previous table in place.

    The folder is checked before `out` is locked or created, so a corpus with no files
    writes nothing. Bad files and lines are skipped and listed in the returned stats.
    """
    if not folder.is_dir():
        raise PipelineInputError(
            f"corpus {corpus!r}: folder {folder} does not exist; "
            f"add files with `llm-pipeline corpus add {corpus} SOURCE...`"
        )
    files = corpus_files(folder)
    if not files:
        raise PipelineInputError(f"corpus {corpus!r}: folder {folder} has no files")
    fingerprint = fingerprint_files(folder, files)
    stats = ReadStats()
    # Progress is in bytes of the files on disk, whatever their format (`counted_documents`).
    sizes = _file_sizes(folder, files)
    progress = Progress(sum(sizes.values()), "raw_corpus", emit)
    with atomic_dir(out) as tmp:
        documents = iter_documents(
            folder,
            text_field=settings.text_field,
            max_doc_chars=settings.max_doc_chars,
            stats=stats,
            files=files,
            limits=ReadLimits.of(settings),
            encoding_errors=settings.encoding_errors,
        )
        write_documents(counted_documents(documents, stats, progress, sizes), tmp)
        progress.finish()
        if stats.documents == 0:
            problems = "\n".join(stats.problems) or "no problems reported"
            raise PipelineInputError(
                f"corpus {corpus!r}: no usable documents in {len(files)} file(s) "
                f"under {folder} (supported: {SUPPORTED_DESCRIPTION}).\n{problems}"
            )
        RawManifest(corpus=corpus, fingerprint=fingerprint, stats=stats.summary()).write(tmp)
    return RawCorpus(len(files), fingerprint, stats)


@dataclass(frozen=True)
class CleanedCorpus:
    """What one cleaning run made: the funnel counts, the sides and their overlap."""

    stats: CleaningStats
    split: SplitSummary
    leakage: Leakage


def document_batches(documents: Path, corpus: str) -> tuple[Iterator[tuple], int]:
    """The `raw_corpus` table in `documents` as cleaning batches, and its UTF-8 bytes from the
    raw manifest (the progress total; 0 when unknown). Batches are smaller for a small corpus,
    so its progress moves in steps; the output does not depend on their size."""
    inputs = parquet_parts(documents)
    if not inputs:
        raise PipelineInputError(f"corpus {corpus!r}: raw_corpus has no output; materialize it")
    manifest = read_raw_manifest(documents)
    total_bytes = int(manifest.stats.get("bytes", 0)) if manifest is not None else 0
    n_docs = sum(pq.ParquetFile(f).metadata.num_rows for f in inputs)
    return iter_document_batches(inputs, batch_size_for(n_docs, DOCUMENT_BATCH)), total_bytes


def clean_corpus(
    batches: Iterable[tuple],
    out_dir: Path,
    cleaning: CleaningConfig,
    corpus: str,
    *,
    workers: int = 1,
    total_bytes: int = 0,
    emit: Emit | None = None,
    warn: Emit | None = None,
) -> CleanedCorpus:
    """Clean `(texts, sources)` batches into `out_dir` (a fresh folder the caller publishes,
    as `clean_documents`): filters, dedups and passage dedup, the split, its leakage measured
    and recorded in `split.json`, and the config and funnel in `cleaning.json`.

    Refuses (PipelineInputError) a corpus that cleaning empties — naming the profile that
    would keep more, when one would — or that leaves one side of the split empty; a split
    outside its bounds for lack of documents is only warned about.
    """
    stats = clean_documents(
        batches, out_dir, cleaning, workers=workers, emit=emit, total_bytes=total_bytes
    )
    advice = cleaning_advice(stats, cleaning, out_dir / DROPPED_DIR)
    if advice is not None and warn is not None:
        warn(advice.message(cleaning.profile))
    if stats.docs_out == 0:
        raise PipelineInputError(
            f"corpus {corpus!r}: no documents left after cleaning "
            f"({stats.docs_in} in; dropped: {stats.dropped}). Relax the filters in the "
            f"cleaned_corpus config (profile {cleaning.profile!r}; profiles: {PROFILES}) "
            "or add more text."
            + (f" {advice.message(cleaning.profile)}" if advice is not None else "")
        )
    split = read_split(out_dir)
    problem = split.problem()
    if split.val_docs == 0 or split.train_docs == 0:
        raise PipelineInputError(
            f"corpus {corpus!r}: {stats.docs_out} document(s) left after cleaning: {problem}"
        )
    if problem and warn is not None:  # too few units: the one case allowed outside the bounds
        warn(f"corpus {corpus!r}: split: {problem}")
    parts = parquet_parts(out_dir)
    leakage = measure_leakage(parts)
    write_split_file(out_dir, SplitFile(split, leakage, parts_sha256(parts)))
    write_json_atomic(
        out_dir / CLEANING_FILE, {"config": asdict(cleaning), "stats": stats.to_dict()}
    )
    return CleanedCorpus(stats, split, leakage)
