"""The cleaning stage as plain functions: normalise, filter, deduplicate, write Parquet.

Two streaming passes over the corpus (the second reads pass 1's staging copy once and the
survivors' copy twice), so memory stays flat however large it is:

1. Worker processes normalise each batch, run the filters (cheapest first: length rules, C4 line
   cleaning, Gopher repetition, Gopher quality, symbols, duplicated lines) and compute each kept
   document's content hash, MinHash signature and the keys of its long paragraphs. The parent
   appends kept documents to an uncompressed staging copy, the signatures to a flat file, and
   the exact-hash, LSH band and paragraph keys to hash-partitioned spill files
   (`dedup.KeySpill`).
2. The spills are resolved one partition at a time into a one-byte-per-document decision (keep,
   exact duplicate, near duplicate) and, with passage dedup, the repeated passages each survivor
   loses (`passages.py`). The staging copy is streamed once into a copy of the survivors, with
   their repeated passages taken out (`survivors.py`: a document that lost passages is judged
   again); the survivors are split into train and validation (`split/sides.py`: bounded clusters of
   near-copies and contained texts, keyed by the raw text); and the survivors' copy is
   streamed into the final zstd Parquet parts with their `split` column.

Every removed document is counted under the filter that removed it, with its bytes, so the
funnel adds up: documents in − documents out = Σ removals; bytes in − bytes out = Σ removed
bytes + bytes edited away (normalisation, C4 line removal, passage dedup). A bounded, uniform
sample of each filter's removals (the documents with the smallest content hashes) is kept for
inspection.
The output order, and so the output files, are deterministic for any number of workers.

This module holds the two passes (`_filter_and_stage`, `_drop_duplicates_and_write`); pass 1's
per-batch work is `filter_pass.py`, the counting `funnel.py`, the spills `dedup/exact.py`, passage
dedup `dedup/passages.py`, the split `split/sides.py`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from llm_pipeline.progress import Emit, Progress
from llm_pipeline.text.dedup.exact import (
    KEEP,
    KeySpill,
    mark_exact_duplicates,
    mark_near_duplicates,
)
from llm_pipeline.text.dedup.passages import Repeats, resolve_repeats
from llm_pipeline.text.dedup.survivors import kept_batches, repeated_survivors, write_survivors
from llm_pipeline.text.filters.cleaning_config import CleaningConfig
from llm_pipeline.text.filters.filter_pass import (
    BatchResult,
    FilterPlan,
    content_digest,
    filtered_batches,
)
from llm_pipeline.text.funnel import (
    DROPPED_DIR,
    EXACT_DUPLICATE,
    NEAR_DUPLICATE,
    NORMALIZE,
    PASSAGE_DUPLICATE,
    CleaningStats,
    DroppedSample,
    Tally,
)
from llm_pipeline.text.split.sides import TRAIN, VAL, decide_split
from llm_pipeline.text.split.split_file import SplitFile, write_split_file
from llm_pipeline.text.store import CLEANED_SCHEMA, STAGING_SCHEMA, PartWriter

# The cleaning stage's public names; the step names come from `funnel.py`.
__all__ = [
    "DROPPED_DIR",
    "EXACT_DUPLICATE",
    "NEAR_DUPLICATE",
    "NORMALIZE",
    "PASSAGE_DUPLICATE",
    "CleaningConfig",
    "CleaningStats",
    "clean_documents",
    "document_id",
    "iter_document_batches",
]


def document_id(text: str) -> str:
    """Stable content hash of a normalised document, as written in the `doc_id` column."""
    return content_digest(text.encode("utf-8")).hex()


def iter_document_batches(files: Iterable[Path], batch_size: int = 2048) -> Iterator[tuple]:
    """Yield (texts, sources) batches from document Parquet files (columns `text`, `source`)."""
    for path in files:
        parquet = pq.ParquetFile(path, pre_buffer=False)
        for batch in parquet.iter_batches(columns=["text", "source"], batch_size=batch_size):
            yield batch.column(0).to_pylist(), batch.column(1).to_pylist()


def clean_documents(
    batches: Iterable[tuple],
    out_dir: Path,
    config: CleaningConfig = CleaningConfig(),
    workers: int = 1,
    emit: Emit | None = None,
    total_bytes: int = 0,
    label: str = "cleaned_corpus",
) -> CleaningStats:
    """Clean `(texts, sources)` batches into Parquet parts under `out_dir` and return the counts.

    `out_dir` should be a fresh temporary folder (see `atomic_dir`): this function writes parts as
    it goes and leaves publishing the folder to the caller. Scratch files (staging copy,
    signatures, key spills) live in `out_dir/.scratch` and are removed before returning. A sample
    of removed documents is written to `out_dir/_dropped/<filter>.parquet`.

    With `emit`, the passes report progress lines (`progress.Progress`) as `<label>/filter`
    over `total_bytes` (the input documents' UTF-8 bytes, 0 if unknown), `<label>/dedup` over
    the bytes pass 1 kept and `<label>/split` over the bytes dedup kept.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    scratch = out_dir / ".scratch"
    stats = CleaningStats()
    tally = Tally()
    sample = DroppedSample(config.dropped_sample_size)
    try:
        progress = Progress(total_bytes, f"{label}/filter", emit)
        staged = _filter_and_stage(
            batches, scratch, config, workers, stats, tally, sample, progress
        )
        progress.finish()
        _drop_duplicates_and_write(
            staged,
            out_dir,
            config,
            stats,
            tally,
            sample,
            lambda total, step: Progress(total, f"{label}/{step}", emit),
        )
        if config.dropped_sample_size:
            sample.write(out_dir / DROPPED_DIR)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    stats.record(tally, config.step_names())
    stats.seconds = time.perf_counter() - started
    return stats


@dataclass
class _Staged:
    """What pass 1 leaves in the scratch folder for pass 2: the kept documents (an uncompressed
    Parquet copy, in output order), their MinHash signatures (one flat uint32 file) and the
    exact, LSH band and passage keys, spilled by hash partition."""

    scratch: Path
    exact: KeySpill
    bands: KeySpill
    passages: KeySpill
    n_docs: int = 0
    n_bytes: int = 0

    @property
    def documents(self) -> Path:
        return self.scratch / "staged"

    @property
    def signatures(self) -> Path:
        return self.scratch / "signatures.bin"

    @property
    def survivors(self) -> Path:
        return self.scratch / "survivors"


def _filter_and_stage(
    batches: Iterable[tuple],
    scratch: Path,
    config: CleaningConfig,
    workers: int,
    stats: CleaningStats,
    tally: Tally,
    sample: DroppedSample,
    progress: Progress,
) -> _Staged:
    """Pass 1: normalise and filter every batch (on `workers` processes), count what the filters
    removed, and stage the survivors with their dedup keys."""
    (scratch / "staged").mkdir(parents=True)
    staged = _Staged(
        scratch,
        KeySpill(scratch / "exact"),
        KeySpill(scratch / "bands"),
        KeySpill(scratch / "passages"),
    )
    plan = FilterPlan(
        tuple(config.filters()),
        config.dropped_sample_size,
        config.minhash if config.near_dedup else None,
        config.passage_min_words if config.passage_dedup else 0,
    )
    with (
        PartWriter(staged.documents, STAGING_SCHEMA, compression="none") as staging,
        open(staged.signatures, "wb") as signature_file,
    ):
        for result in filtered_batches(batches, plan, workers):
            stats.docs_in += result.docs_in
            stats.bytes_in += result.bytes_in
            tally.merge(result.tally)
            # Workers report through their results: one reporter for the stage.
            progress.advance(result.docs_in, result.bytes_in)
            for candidate in result.samples:
                sample.offer(*candidate)
            if result.texts:
                _stage(result, staged, staging, signature_file, config.exact_dedup)
    return staged


def _stage(
    result: BatchResult,
    staged: _Staged,
    staging: PartWriter,
    signature_file: IO[bytes],
    exact_dedup: bool,
) -> None:
    """Append one batch's kept documents to the staging copy, numbered from `staged.n_docs`,
    and spill their exact keys (the digest's first 8 bytes) and band keys."""
    count = len(result.texts)
    index = np.arange(staged.n_docs, staged.n_docs + count, dtype=np.uint32)
    if exact_dedup:
        digest_bytes = b"".join(result.digests)
        keys = np.frombuffer(digest_bytes, dtype=">u8")[::2].astype(np.uint64)
        staged.exact.add(keys, index)
    if result.signatures is not None:
        result.signatures.tofile(signature_file)
        has_shingles = result.signatures[:, 0] != np.iinfo(np.uint32).max
        keys = result.band_keys[has_shingles]
        staged.bands.add(keys.ravel(), np.repeat(index[has_shingles], keys.shape[1]))
    if result.passage_keys is not None and len(result.passage_keys):
        staged.passages.add(result.passage_keys, index[result.passage_owners])
    staging.write(
        [
            pa.array([d.hex() for d in result.digests], pa.string()),
            pa.array(result.texts, pa.large_string()),
            pa.array([len(t) for t in result.texts], pa.int64()),
            pa.array(result.sources, pa.string()),
            pa.array(result.split_keys, pa.uint64()),
            pa.array(result.n_bytes, pa.int64()),
        ]
    )
    staged.n_docs += count
    staged.n_bytes += sum(result.n_bytes)
    if staged.n_docs >= 2**32 - 1:
        raise ValueError("more than 4 billion documents in one cleaning run")


def _drop_duplicates_and_write(
    staged: _Staged,
    out_dir: Path,
    config: CleaningConfig,
    stats: CleaningStats,
    tally: Tally,
    sample: DroppedSample,
    progress: Callable[[int, str], Progress],
) -> None:
    """Pass 2: decide which staged documents are duplicates and which passages repeat, stream
    the survivors (repeats taken out) to a copy, decide their sides (`split/sides.py`, written as
    `split.json`), then stream that copy into the final zstd parts."""
    decision = _resolve_duplicates(staged, config)
    repeats = None
    if config.passage_dedup:
        repeats = Repeats(staged.scratch / "repeats")
        resolve_repeats(staged.passages, decision == KEEP, repeats)
    shutil.rmtree(staged.passages.folder, ignore_errors=True)
    counter = progress(staged.n_bytes, "dedup")
    digests = KeySpill(staged.scratch / "survivor-digests") if repeats is not None else None
    written = write_survivors(
        staged.documents, staged.survivors, decision, repeats, config, tally, sample, counter,
        digests,
    )  # fmt: skip
    counter.finish()
    shutil.rmtree(staged.documents, ignore_errors=True)
    shutil.rmtree(staged.scratch / "repeats", ignore_errors=True)
    repeated = repeated_survivors(staged.survivors, written, tally, sample)
    shutil.rmtree(staged.scratch / "survivor-digests", ignore_errors=True)
    signatures = None
    if config.near_dedup and staged.n_docs:
        signatures = np.memmap(staged.signatures, dtype=np.uint32, mode="r",
                               shape=(staged.n_docs, config.minhash.num_perm))  # fmt: skip
    is_val, split = decide_split(
        kept_batches(staged.survivors, repeated, ["split_key", "text", "n_bytes", "row", "edited"]),
        signatures,
        config.minhash,
        config.val_fraction,
        config.min_val_docs,
        staged.scratch / "split",
    )
    del signatures
    write_split_file(out_dir, SplitFile(split))
    counter = progress(written.n_bytes, "split")
    # Batches are the output's row groups, so their size stays fixed (progress moves per batch).
    with PartWriter(out_dir, CLEANED_SCHEMA) as writer:
        offset = 0
        for batch in kept_batches(staged.survivors, repeated):
            side = is_val[offset : offset + batch.num_rows]
            offset += batch.num_rows
            n_bytes = batch.column("n_bytes").to_numpy()
            stats.docs_out += batch.num_rows
            stats.bytes_out += int(n_bytes.sum())
            counter.advance(batch.num_rows, int(n_bytes.sum()))
            sides = pa.array(np.where(side, VAL, TRAIN), pa.string())
            writer.write([*(batch.column(i) for i in range(len(CLEANED_SCHEMA) - 1)), sides])
    counter.finish()
    stats.parts = writer.parts


def _resolve_duplicates(staged: _Staged, config: CleaningConfig) -> np.ndarray:
    """One byte per staged document, KEEP, EXACT or NEAR, resolved from the spills one
    partition at a time; the spills are deleted once read (the signatures stay: the split
    clusters with them)."""
    decision = np.zeros(staged.n_docs, dtype=np.uint8)
    if config.exact_dedup:
        mark_exact_duplicates(staged.exact, decision)
    if config.near_dedup and staged.n_docs:
        signatures = np.memmap(
            staged.signatures,
            dtype=np.uint32,
            mode="r",
            shape=(staged.n_docs, config.minhash.num_perm),
        )
        mark_near_duplicates(staged.bands, signatures, config.minhash.threshold, decision)
        del signatures
    shutil.rmtree(staged.exact.folder, ignore_errors=True)
    shutil.rmtree(staged.bands.folder, ignore_errors=True)
    return decision
