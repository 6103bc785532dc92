"""The cleaning stage as plain functions: normalise, filter, exact-dedup, write Parquet.

It streams: documents come in batches from Parquet, go out in batches to Parquet parts, and only
the 16-byte hashes of kept documents stay in memory (for exact deduplication).
Normalisation and filtering run in worker processes when `workers > 1`; dedup and writing stay in
the parent so the output order, and so the output files, are deterministic.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llm_pipeline.text.filters import (
    DocumentFilter,
    DuplicateLinesFilter,
    EmptyFilter,
    MaxCharsFilter,
    MinCharsFilter,
    MinWordsFilter,
    NonAlnumFractionFilter,
)
from llm_pipeline.text.normalize import normalize_text
from llm_pipeline.text.store import PartWriter

CLEANED_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("text", pa.large_string()),
        ("n_chars", pa.int64()),
        ("source", pa.string()),
    ]
)
EXACT_DUPLICATE = "exact_duplicate"


@dataclass(frozen=True)
class CleaningConfig:
    """Thresholds of the cleaning filters; 0 (or 1.0 for fractions) turns a filter off."""

    min_chars: int = 20
    max_chars: int = 100_000
    min_words: int = 3
    max_non_alnum_fraction: float = 0.5
    max_duplicate_line_fraction: float = 0.5

    def filters(self) -> list[DocumentFilter]:
        """The filters in the order they run (cheapest first)."""
        return [
            EmptyFilter(),
            MinCharsFilter(self.min_chars),
            MaxCharsFilter(self.max_chars),
            MinWordsFilter(self.min_words),
            NonAlnumFractionFilter(self.max_non_alnum_fraction),
            DuplicateLinesFilter(self.max_duplicate_line_fraction),
        ]


@dataclass
class CleaningStats:
    """Counts for the asset metadata: what came in, what went out, and why the rest was dropped."""

    docs_in: int = 0
    bytes_in: int = 0
    docs_out: int = 0
    bytes_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    parts: int = 0

    @property
    def mb_per_s(self) -> float:
        return self.bytes_in / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["mb_per_s"] = round(self.mb_per_s, 3)
        return out


def document_id(text: str) -> str:
    """Stable content hash of a normalised document (also the exact-dedup key)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@dataclass
class _BatchResult:
    texts: list[str]
    sources: list[str]
    ids: list[str]
    dropped: Counter
    bytes_in: int
    docs_in: int


def _clean_batch(texts: list[str], sources: list[str], config: CleaningConfig) -> _BatchResult:
    filters = config.filters()
    dropped: Counter = Counter()
    kept_texts, kept_sources, ids = [], [], []
    bytes_in = 0
    for raw, source in zip(texts, sources):
        bytes_in += len(raw.encode("utf-8"))
        text = normalize_text(raw)
        for rule in filters:
            if not rule.keep(text):
                dropped[rule.name] += 1
                break
        else:
            kept_texts.append(text)
            kept_sources.append(source)
            ids.append(document_id(text))
    return _BatchResult(kept_texts, kept_sources, ids, dropped, bytes_in, len(texts))


def iter_document_batches(files: Iterable[Path], batch_size: int = 2048) -> Iterator[tuple]:
    """Yield (texts, sources) batches from document Parquet files (columns `text`, `source`)."""
    for path in files:
        parquet = pq.ParquetFile(path, pre_buffer=False)
        for batch in parquet.iter_batches(columns=["text", "source"], batch_size=batch_size):
            yield batch.column(0).to_pylist(), batch.column(1).to_pylist()


def _results(
    batches: Iterable[tuple], config: CleaningConfig, workers: int
) -> Iterator[_BatchResult]:
    if workers <= 1:
        for texts, sources in batches:
            yield _clean_batch(texts, sources, config)
        return
    # spawn, not fork: the caller (a Dagster run) has threads, and forking those can deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = []
        for texts, sources in batches:
            pending.append(pool.submit(_clean_batch, texts, sources, config))
            # Bounded look-ahead: enough to keep every worker busy, never the whole corpus.
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def clean_documents(
    batches: Iterable[tuple],
    out_dir: Path,
    config: CleaningConfig = CleaningConfig(),
    workers: int = 1,
) -> CleaningStats:
    """Clean `(texts, sources)` batches into Parquet parts under `out_dir` and return the counts.

    `out_dir` should be a fresh temporary folder (see `atomic_dir`): this function writes parts as
    it goes and leaves publishing the folder to the caller.
    """
    started = time.perf_counter()
    stats = CleaningStats()
    dropped: Counter = Counter({rule.name: 0 for rule in config.filters()})
    dropped[EXACT_DUPLICATE] = 0
    seen: set[bytes] = set()
    writer = PartWriter(out_dir, CLEANED_SCHEMA)
    try:
        for result in _results(batches, config, workers):
            stats.docs_in += result.docs_in
            stats.bytes_in += result.bytes_in
            dropped.update(result.dropped)
            ids, texts, sources = [], [], []
            for doc_id, text, source in zip(result.ids, result.texts, result.sources):
                key = bytes.fromhex(doc_id)
                if key in seen:
                    dropped[EXACT_DUPLICATE] += 1
                    continue
                seen.add(key)
                ids.append(doc_id)
                texts.append(text)
                sources.append(source)
            stats.docs_out += len(ids)
            stats.bytes_out += sum(len(t.encode("utf-8")) for t in texts)
            writer.write(
                [
                    pa.array(ids, pa.string()),
                    pa.array(texts, pa.large_string()),
                    pa.array([len(t) for t in texts], pa.int64()),
                    pa.array(sources, pa.string()),
                ]
            )
    finally:
        writer.close()
    stats.parts = writer.parts
    stats.dropped = dict(dropped)
    stats.seconds = time.perf_counter() - started
    return stats
