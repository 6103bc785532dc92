"""The cleaning stage as plain functions: normalise, filter, deduplicate, write Parquet.

Two streaming passes over the corpus, so memory stays flat however large it is:

1. Worker processes normalise each batch, run the filters (cheapest first: length rules, C4 line
   cleaning, Gopher repetition, Gopher quality, symbols, duplicated lines) and compute each kept
   document's content hash and MinHash signature. The parent appends kept documents to an
   uncompressed staging copy, the signatures to a flat file, and the exact-hash and LSH band keys
   to hash-partitioned spill files (`dedup.KeySpill`).
2. The spills are resolved one partition at a time into a one-byte-per-document decision (keep,
   exact duplicate, near duplicate), and the staging copy is streamed once more into the final
   zstd Parquet parts, skipping the duplicates.

Every removed document is counted under the filter that removed it, with its bytes, so the
funnel adds up: documents in − documents out = Σ removals; bytes in − bytes out = Σ removed
bytes + bytes edited away (normalisation, C4 line removal). A bounded, uniform sample of each
filter's removals (the documents with the smallest content hashes) is kept for inspection.
The output order, and so the output files, are deterministic for any number of workers.
"""

from __future__ import annotations

import hashlib
import heapq
import multiprocessing
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from llm_pipeline.text.dedup import (
    EXACT,
    KEEP,
    NEAR,
    KeySpill,
    mark_exact_duplicates,
    mark_near_duplicates,
)
from llm_pipeline.text.filters import (
    DuplicateLinesFilter,
    EmptyFilter,
    MaxCharsFilter,
    MinCharsFilter,
    MinWordsFilter,
    NonAlnumFractionFilter,
)
from llm_pipeline.text.minhash import MinHashConfig, MinHasher
from llm_pipeline.text.normalize import normalize_text
from llm_pipeline.text.profiles import (
    DEFAULT_PROFILE,
    PROFILE_SETTINGS,
    apply_overrides,
    profile_settings,
)
from llm_pipeline.text.quality import C4LineFilter, GopherQualityFilter, GopherRepetitionFilter
from llm_pipeline.text.store import PartWriter, parquet_parts

CLEANED_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("text", pa.large_string()),
        ("n_chars", pa.int64()),
        ("source", pa.string()),
    ]
)
_STAGING_SCHEMA = pa.schema([*CLEANED_SCHEMA, ("n_bytes", pa.int64())])
DROPPED_SCHEMA = pa.schema(
    [
        ("filter", pa.string()),
        ("reason", pa.string()),
        ("source", pa.string()),
        ("n_chars", pa.int64()),
        ("text", pa.large_string()),
    ]
)
EXACT_DUPLICATE = "exact_duplicate"
NEAR_DUPLICATE = "near_duplicate"
NORMALIZE = "normalize"
DROPPED_DIR = "_dropped"
# Sampled texts are cut to this many characters: enough to judge a rule, bounded on disk.
SAMPLE_MAX_CHARS = 20_000

_DEFAULTS = PROFILE_SETTINGS[DEFAULT_PROFILE]
_DEFAULT_MINHASH = MinHashConfig()


@dataclass(frozen=True)
class CleaningConfig:
    """Everything the cleaning stage does, resolved from a profile plus overrides.

    0 (or 1.0 for a fraction) turns a basic threshold off; `c4_lines`, `gopher_repetition`,
    `gopher_quality`, `exact_dedup` and `near_dedup` turn whole filters off; `c4`, `repetition`,
    `quality` and `minhash` carry their thresholds (see `quality.py`, `minhash.py`).
    The plain constructor gives the default profile's settings; use `from_profile` for others.
    """

    profile: str = DEFAULT_PROFILE
    min_chars: int = _DEFAULTS["min_chars"]
    max_chars: int = _DEFAULTS["max_chars"]
    min_words: int = _DEFAULTS["min_words"]
    max_non_alnum_fraction: float = _DEFAULTS["max_non_alnum_fraction"]
    max_duplicate_line_fraction: float = _DEFAULTS["max_duplicate_line_fraction"]
    c4_lines: bool = _DEFAULTS["c4_lines"]
    gopher_repetition: bool = _DEFAULTS["gopher_repetition"]
    gopher_quality: bool = _DEFAULTS["gopher_quality"]
    c4: C4LineFilter = _DEFAULTS["c4"]
    repetition: GopherRepetitionFilter = _DEFAULTS["repetition"]
    quality: GopherQualityFilter = _DEFAULTS["quality"]
    exact_dedup: bool = True
    near_dedup: bool = True
    minhash: MinHashConfig = _DEFAULT_MINHASH
    dropped_sample_size: int = 100

    @classmethod
    def from_profile(cls, profile: str = DEFAULT_PROFILE, **overrides: Any) -> CleaningConfig:
        """A profile's settings with `overrides` on top: plain field names, or
        `"section.field"` for thresholds (`{"quality.min_words": 20}`).
        Unknown profiles or keys raise a ValueError that lists the valid ones."""
        settings = apply_overrides(profile_settings(profile), overrides)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"unknown cleaning settings {unknown}; valid: {sorted(known)}")
        return cls(profile=profile, **{k: v for k, v in settings.items() if k != "profile"})

    def filters(self) -> list:
        """The document filters and the C4 line transform, in the order they run."""
        rules: list = [
            EmptyFilter(),
            MinCharsFilter(self.min_chars),
            MaxCharsFilter(self.max_chars),
            MinWordsFilter(self.min_words),
        ]
        if self.c4_lines:
            rules.append(self.c4)
        if self.gopher_repetition:
            rules.append(self.repetition)
        if self.gopher_quality:
            rules.append(self.quality)
        rules += [
            NonAlnumFractionFilter(self.max_non_alnum_fraction),
            DuplicateLinesFilter(self.max_duplicate_line_fraction),
        ]
        return rules

    def step_names(self) -> list[str]:
        """Funnel steps in order: normalisation, each filter, then the two dedups."""
        names = [NORMALIZE, *(rule.name for rule in self.filters())]
        if self.exact_dedup:
            names.append(EXACT_DUPLICATE)
        if self.near_dedup:
            names.append(NEAR_DUPLICATE)
        return names


@dataclass
class CleaningStats:
    """Counts for the asset metadata: what came in, what went out, and why the rest was dropped.

    `dropped` / `dropped_bytes`: documents and their bytes removed, per filter; `edited_bytes`:
    bytes removed from documents that stayed (normalisation, C4 line cleaning); `reasons`: the
    finer reason inside each filter; `lines_removed`: lines taken out by C4 line cleaning.
    """

    docs_in: int = 0
    bytes_in: int = 0
    docs_out: int = 0
    bytes_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_bytes: dict[str, int] = field(default_factory=dict)
    edited_bytes: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    lines_removed: int = 0
    seconds: float = 0.0
    parts: int = 0
    funnel: list[dict] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return self.bytes_in / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def build_funnel(self, steps: list[str]) -> list[dict]:
        """One row per step: documents and bytes it removed, and what is left after it."""
        docs, nbytes = self.docs_in, self.bytes_in
        rows = []
        for step in steps:
            removed_docs = self.dropped.get(step, 0)
            removed_bytes = self.dropped_bytes.get(step, 0) + self.edited_bytes.get(step, 0)
            docs -= removed_docs
            nbytes -= removed_bytes
            rows.append(
                {
                    "step": step,
                    "docs_removed": removed_docs,
                    "bytes_removed": removed_bytes,
                    "docs_left": docs,
                    "bytes_left": nbytes,
                }
            )
        self.funnel = rows
        return rows

    def to_dict(self) -> dict:
        out = asdict(self)
        out["mb_per_s"] = round(self.mb_per_s, 3)
        return out


def content_digest(data: bytes) -> bytes:
    """The 16-byte content hash of a normalised document's UTF-8 bytes: the exact-dedup key,
    and in hex its `doc_id`."""
    return hashlib.blake2b(data, digest_size=16).digest()


def document_id(text: str) -> str:
    """Stable content hash of a normalised document, as written in the `doc_id` column."""
    return content_digest(text.encode("utf-8")).hex()


@dataclass
class _BatchResult:
    texts: list[str]
    sources: list[str]
    digests: list[bytes]
    n_bytes: list[int]
    signatures: np.ndarray | None
    band_keys: np.ndarray | None
    dropped: Counter
    dropped_bytes: Counter
    edited_bytes: Counter
    reasons: Counter
    lines_removed: int
    samples: list[tuple]
    bytes_in: int
    docs_in: int


def _priority(data: bytes) -> int:
    """Sampling priority: the documents with the smallest content hashes form the sample, which
    is uniform, deterministic, and mergeable from per-batch candidates."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _clean_batch(texts: list[str], sources: list[str], config: CleaningConfig) -> _BatchResult:
    rules = config.filters()
    dropped: Counter = Counter()
    dropped_bytes: Counter = Counter()
    edited: Counter = Counter()
    reasons: Counter = Counter()
    candidates: dict[str, list[tuple]] = {}
    lines_removed = 0
    kept_texts, kept_sources, digests, kept_bytes = [], [], [], []
    bytes_in = 0
    for raw, source in zip(texts, sources):
        raw_bytes = len(raw.encode("utf-8"))
        bytes_in += raw_bytes
        text = normalize_text(raw)
        data = text.encode("utf-8") if text is not raw else None
        n_bytes = len(data) if data is not None else raw_bytes
        edited[NORMALIZE] += raw_bytes - n_bytes
        reason = None
        for rule in rules:
            if isinstance(rule, C4LineFilter):
                result = rule.clean(text)
                lines_removed += result.lines_removed
                if result.text is None:
                    reason = result.reason
                elif result.text is not text:
                    text = result.text
                    new_bytes = len(text.encode("utf-8"))
                    edited[rule.name] += n_bytes - new_bytes
                    n_bytes = new_bytes
                    data = None
            elif hasattr(rule, "reject"):
                reason = rule.reject(text)
            elif not rule.keep(text):
                reason = rule.name
            if reason is not None:
                dropped[rule.name] += 1
                dropped_bytes[rule.name] += n_bytes
                reasons[rule.name, reason] += 1
                if config.dropped_sample_size:
                    data = data if data is not None else text.encode("utf-8")
                    candidates.setdefault(rule.name, []).append(
                        (_priority(data), rule.name, reason, source, text)
                    )
                break
        else:
            data = data if data is not None else text.encode("utf-8")
            kept_texts.append(text)
            kept_sources.append(source)
            digests.append(content_digest(data))
            kept_bytes.append(n_bytes)
    samples = []
    for rows in candidates.values():
        samples += heapq.nsmallest(config.dropped_sample_size, rows)
    signatures = band_keys = None
    if config.near_dedup and kept_texts:
        hasher = _hasher(config.minhash)
        signatures = hasher.signatures(kept_texts)
        band_keys = hasher.band_keys(signatures)
    return _BatchResult(
        kept_texts,
        kept_sources,
        digests,
        kept_bytes,
        signatures,
        band_keys,
        dropped,
        dropped_bytes,
        edited,
        reasons,
        lines_removed,
        samples,
        bytes_in,
        len(texts),
    )


_HASHERS: dict[MinHashConfig, MinHasher] = {}


def _hasher(config: MinHashConfig) -> MinHasher:
    """One MinHasher per process and config (its permutations are drawn once)."""
    if config not in _HASHERS:
        _HASHERS[config] = MinHasher(config)
    return _HASHERS[config]


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


class DroppedSample:
    """The `size` removals with the smallest priority per filter: a uniform sample, bounded."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.heaps: dict[str, list[tuple]] = {}

    def offer(self, priority: int, name: str, reason: str, source: str, text: str) -> None:
        if self.size <= 0:
            return
        heap = self.heaps.setdefault(name, [])
        item = (-priority, name, reason, source, text[:SAMPLE_MAX_CHARS], len(text))
        if len(heap) < self.size:
            heapq.heappush(heap, item)
        elif -priority > heap[0][0]:
            heapq.heapreplace(heap, item)

    def write(self, folder: Path) -> dict[str, int]:
        """One `<filter>.parquet` per filter that removed anything; returns rows per file."""
        written = {}
        for name, heap in sorted(self.heaps.items()):
            rows = sorted(heap, reverse=True)  # smallest priority first
            folder.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_arrays(
                [
                    pa.array([r[1] for r in rows], pa.string()),
                    pa.array([r[2] for r in rows], pa.string()),
                    pa.array([r[3] for r in rows], pa.string()),
                    pa.array([r[5] for r in rows], pa.int64()),
                    pa.array([r[4] for r in rows], pa.large_string()),
                ],
                schema=DROPPED_SCHEMA,
            )
            pq.write_table(table, folder / f"{name}.parquet", compression="zstd")
            written[name] = len(rows)
        return written


def clean_documents(
    batches: Iterable[tuple],
    out_dir: Path,
    config: CleaningConfig = CleaningConfig(),
    workers: int = 1,
) -> CleaningStats:
    """Clean `(texts, sources)` batches into Parquet parts under `out_dir` and return the counts.

    `out_dir` should be a fresh temporary folder (see `atomic_dir`): this function writes parts as
    it goes and leaves publishing the folder to the caller. Scratch files (staging copy,
    signatures, key spills) live in `out_dir/.scratch` and are removed before returning. A sample
    of removed documents is written to `out_dir/_dropped/<filter>.parquet`.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    scratch = out_dir / ".scratch"
    steps = config.step_names()
    stats = CleaningStats()
    dropped: Counter = Counter({name: 0 for name in steps if name != NORMALIZE})
    dropped_bytes: Counter = Counter({name: 0 for name in steps if name != NORMALIZE})
    edited: Counter = Counter()
    reasons: Counter = Counter()
    sample = DroppedSample(config.dropped_sample_size)
    try:
        staged = scratch / "staged"
        staged.mkdir(parents=True)
        exact_spill = KeySpill(scratch / "exact")
        band_spill = KeySpill(scratch / "bands")
        n_docs = 0
        with (
            PartWriter(staged, _STAGING_SCHEMA, compression="none") as staging,
            open(scratch / "signatures.bin", "wb") as signature_file,
        ):
            for result in _results(batches, config, workers):
                stats.docs_in += result.docs_in
                stats.bytes_in += result.bytes_in
                dropped.update(result.dropped)
                dropped_bytes.update(result.dropped_bytes)
                edited.update(result.edited_bytes)
                reasons.update(result.reasons)
                stats.lines_removed += result.lines_removed
                for candidate in result.samples:
                    sample.offer(*candidate)
                count = len(result.texts)
                if count == 0:
                    continue
                index = np.arange(n_docs, n_docs + count, dtype=np.uint32)
                digest_bytes = b"".join(result.digests)
                if config.exact_dedup:
                    keys = np.frombuffer(digest_bytes, dtype=">u8")[::2].astype(np.uint64)
                    exact_spill.add(keys, index)
                if result.signatures is not None:
                    result.signatures.tofile(signature_file)
                    has_shingles = result.signatures[:, 0] != np.iinfo(np.uint32).max
                    keys = result.band_keys[has_shingles]
                    band_spill.add(keys.ravel(), np.repeat(index[has_shingles], keys.shape[1]))
                staging.write(
                    [
                        pa.array([d.hex() for d in result.digests], pa.string()),
                        pa.array(result.texts, pa.large_string()),
                        pa.array([len(t) for t in result.texts], pa.int64()),
                        pa.array(result.sources, pa.string()),
                        pa.array(result.n_bytes, pa.int64()),
                    ]
                )
                n_docs += count
                if n_docs >= 2**32 - 1:
                    raise ValueError("more than 4 billion documents in one cleaning run")

        decision = np.zeros(n_docs, dtype=np.uint8)
        if config.exact_dedup:
            mark_exact_duplicates(exact_spill, decision)
        if config.near_dedup and n_docs:
            signatures = np.memmap(
                scratch / "signatures.bin",
                dtype=np.uint32,
                mode="r",
                shape=(n_docs, config.minhash.num_perm),
            )
            mark_near_duplicates(band_spill, signatures, config.minhash.threshold, decision)
            del signatures
        shutil.rmtree(scratch / "exact", ignore_errors=True)
        shutil.rmtree(scratch / "bands", ignore_errors=True)

        labels = {EXACT: EXACT_DUPLICATE, NEAR: NEAR_DUPLICATE}
        with PartWriter(out_dir, CLEANED_SCHEMA) as writer:
            offset = 0
            for part in parquet_parts(staged):
                for batch in pq.ParquetFile(part, pre_buffer=False).iter_batches(batch_size=8192):
                    verdict = decision[offset : offset + batch.num_rows]
                    offset += batch.num_rows
                    keep = verdict == KEEP
                    n_bytes = batch.column("n_bytes").to_numpy()
                    for code, name in labels.items():
                        hit = verdict == code
                        if hit.any():
                            dropped[name] += int(hit.sum())
                            dropped_bytes[name] += int(n_bytes[hit].sum())
                            reasons[name, name] += int(hit.sum())
                            _sample_duplicates(sample, batch, np.flatnonzero(hit), name)
                    kept = batch.filter(pa.array(keep))
                    stats.docs_out += kept.num_rows
                    stats.bytes_out += int(n_bytes[keep].sum())
                    writer.write([kept.column(i) for i in range(len(CLEANED_SCHEMA))])
        stats.parts = writer.parts
        if config.dropped_sample_size:
            sample.write(out_dir / DROPPED_DIR)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    stats.dropped = dict(dropped)
    stats.dropped_bytes = dict(dropped_bytes)
    stats.edited_bytes = {NORMALIZE: edited[NORMALIZE], **{k: v for k, v in edited.items()}}
    nested: dict[str, dict[str, int]] = {}
    for (name, reason), count in sorted(reasons.items()):
        nested.setdefault(name, {})[reason] = count
    stats.reasons = nested
    stats.build_funnel(steps)
    stats.seconds = time.perf_counter() - started
    return stats


def _sample_duplicates(sample: DroppedSample, batch: pa.RecordBatch, rows, name: str) -> None:
    if sample.size <= 0:
        return
    ids = batch.column("doc_id")
    texts = batch.column("text")
    sources = batch.column("source")
    for row in rows.tolist():
        priority = int(ids[row].as_py()[:16], 16)
        sample.offer(priority, name, name, sources[row].as_py(), texts[row].as_py())
