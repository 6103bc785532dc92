"""Pass 1 of cleaning, one batch at a time (in worker processes): normalise, filter, hash.

Each document is normalised, then the steps run in order, cheapest first, until one drops it.
A step is a `DocumentFilter` (`filter(text) -> (kept, reason)`) or, when it declares
`edits_text`, a `TextTransform` whose `transform` also hands back the edited text (C4 line
cleaning). `filter_batch` is the one place that counts what each step removed or edited, in a
`Tally`, and offers each removal to the dropped sample. Kept documents get their content hash
(the exact-dedup key and `doc_id`), for near dedup their MinHash signature and band keys, and for
passage dedup the keys of their long paragraphs (`passages.py`).
"""

from __future__ import annotations

import hashlib
import heapq
import multiprocessing
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from llm_pipeline.text.dedup.minhash import MinHashConfig, MinHasher
from llm_pipeline.text.dedup.passages import iter_batch_keys
from llm_pipeline.text.filters.basic import DocumentFilter
from llm_pipeline.text.filters.normalize import normalize_text
from llm_pipeline.text.funnel import NORMALIZE, Tally
from llm_pipeline.text.split.sides import split_key


def content_digest(data: bytes) -> bytes:
    """The 16-byte content hash of a normalised document's UTF-8 bytes: the exact-dedup key,
    and in hex its `doc_id`."""
    return hashlib.blake2b(data, digest_size=16).digest()


def sample_priority(data: bytes) -> int:
    """Sampling priority: the documents with the smallest content hashes form the sample, which
    is uniform, deterministic, and mergeable from per-batch candidates."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


@dataclass(frozen=True)
class FilterPlan:
    """What a worker needs for pass 1, built once per run from the `CleaningConfig` (and
    pickled to each worker): the steps in order, how many removals per step to sample, and the
    MinHash settings, or None when near dedup is off (no signatures are computed), and the
    fewest words of a passage that passage dedup compares (0: passage dedup is off)."""

    steps: tuple[DocumentFilter, ...]
    sample_size: int
    minhash: MinHashConfig | None
    passage_min_words: int = 0


@dataclass
class BatchResult:
    """One batch after pass 1: the kept documents with their hashes, and what was removed."""

    docs_in: int = 0
    bytes_in: int = 0
    texts: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)
    split_keys: list[int] = field(default_factory=list)  # of the raw text (text/split/sides.py)
    n_bytes: list[int] = field(default_factory=list)
    signatures: np.ndarray | None = None
    band_keys: np.ndarray | None = None
    # (passage key, index in `texts`) of each kept document's distinct long paragraphs.
    passage_keys: np.ndarray | None = None
    passage_owners: np.ndarray | None = None
    tally: Tally = field(default_factory=Tally)
    # Sample candidates: (priority, step, reason, source, text), the smallest few per step.
    samples: list[tuple] = field(default_factory=list)


def filter_batch(texts: list[str], sources: list[str], plan: FilterPlan) -> BatchResult:
    """Normalise and filter one batch; count every removal and edit under its step's name."""
    out = BatchResult(docs_in=len(texts))
    tally = out.tally
    # Each step's kind is read once here, from what it declares, not per document.
    steps = [(step, step.name, step.edits_text) for step in plan.steps]
    candidates: dict[str, list[tuple]] = {}
    for raw, source in zip(texts, sources):
        raw_bytes = len(raw.encode("utf-8"))
        out.bytes_in += raw_bytes
        text = normalize_text(raw)
        data = text.encode("utf-8") if text is not raw else None
        n_bytes = len(data) if data is not None else raw_bytes
        tally.edited_bytes[NORMALIZE] += raw_bytes - n_bytes
        for step, name, edits_text in steps:
            if edits_text:
                result = step.transform(text)
                tally.lines_removed += result.lines_removed
                kept, reason = result.text is not None, result.reason
                if kept and result.text is not text:
                    text = result.text
                    new_bytes = len(text.encode("utf-8"))
                    tally.edited_bytes[name] += n_bytes - new_bytes
                    n_bytes = new_bytes
                    data = None
            else:
                kept, reason = step.filter(text)
            if not kept:
                tally.drop(name, reason, n_bytes)
                if plan.sample_size:
                    data = data if data is not None else text.encode("utf-8")
                    candidates.setdefault(name, []).append(
                        (sample_priority(data), name, reason, source, text)
                    )
                break
        else:
            data = data if data is not None else text.encode("utf-8")
            out.texts.append(text)
            out.sources.append(source)
            out.digests.append(content_digest(data))
            out.split_keys.append(split_key(raw))
            out.n_bytes.append(n_bytes)
    for rows in candidates.values():
        out.samples += heapq.nsmallest(plan.sample_size, rows)
    if plan.minhash is not None and out.texts:
        hasher = _hasher(plan.minhash)
        out.signatures = hasher.signatures(out.texts)
        out.band_keys = hasher.band_keys(out.signatures)
    if plan.passage_min_words > 0:
        pairs = list(iter_batch_keys(out.texts, plan.passage_min_words))
        out.passage_owners = np.fromiter((i for i, _ in pairs), np.int64, len(pairs))
        out.passage_keys = np.fromiter((k for _, k in pairs), np.uint64, len(pairs))
    return out


_HASHERS: dict[MinHashConfig, MinHasher] = {}


def _hasher(config: MinHashConfig) -> MinHasher:
    """One MinHasher per process and config (its permutations are drawn once)."""
    if config not in _HASHERS:
        _HASHERS[config] = MinHasher(config)
    return _HASHERS[config]


def filtered_batches(
    batches: Iterable[tuple], plan: FilterPlan, workers: int
) -> Iterator[BatchResult]:
    """`filter_batch` over `(texts, sources)` batches, in input order, on `workers` processes."""
    if workers <= 1:
        for texts, sources in batches:
            yield filter_batch(texts, sources, plan)
        return
    # spawn, not fork: the caller (a Dagster run) has threads, and forking those can deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = []
        for texts, sources in batches:
            pending.append(pool.submit(filter_batch, texts, sources, plan))
            # Bounded look-ahead: enough to keep every worker busy, never the whole corpus.
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()
