"""What the cleaning stage removed and why: the per-step tally, the funnel and the dropped sample.

Every removal is recorded in one place, `Tally.drop`, under the funnel step that made it: the
filters in pass 1 (in each worker, one tally per batch, merged by the parent) and the three dedups
in pass 2. The filters themselves count nothing. So the funnel adds up: documents in − documents
out = Σ removals; bytes in − bytes out = Σ removed bytes + bytes edited away (normalisation, C4
line removal, passage dedup).
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# Funnel steps that are not filters: normalisation (edits only) and the three dedups.
NORMALIZE = "normalize"
EXACT_DUPLICATE = "exact_duplicate"
NEAR_DUPLICATE = "near_duplicate"
# Repeated passages taken out of later documents (edits), and documents left with nothing.
PASSAGE_DUPLICATE = "passage_duplicate"

DROPPED_DIR = "_dropped"
# Next to the cleaned parts: the resolved cleaning config and these stats (`CleaningStats`).
CLEANING_FILE = "cleaning.json"
DROPPED_SCHEMA = pa.schema(
    [
        ("filter", pa.string()),
        ("reason", pa.string()),
        ("source", pa.string()),
        ("n_chars", pa.int64()),
        ("text", pa.large_string()),
    ]
)
# Sampled texts are cut to this many characters: enough to judge a rule, bounded on disk.
SAMPLE_MAX_CHARS = 20_000


@dataclass
class Tally:
    """Removals and edits per funnel step, mergeable across batches and processes.

    `dropped` / `dropped_bytes`: documents and their bytes removed per step; `edited_bytes`:
    bytes taken out of documents (by a step that edits: a document passage dedup drops counts
    what it took out here and what was left in `dropped_bytes`); `reasons`: documents per
    (step, reason); `lines_removed`: lines taken out by line-editing transforms (C4);
    `passages_removed`: repeated passages taken out by passage dedup.
    """

    dropped: Counter = field(default_factory=Counter)
    dropped_bytes: Counter = field(default_factory=Counter)
    edited_bytes: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    lines_removed: int = 0
    passages_removed: int = 0

    def drop(self, step: str, reason: str, n_bytes: int, count: int = 1) -> None:
        """Record `count` documents (`n_bytes` in all) removed by `step` for `reason`."""
        self.dropped[step] += count
        self.dropped_bytes[step] += n_bytes
        self.reasons[step, reason] += count

    def merge(self, other: Tally) -> None:
        self.dropped.update(other.dropped)
        self.dropped_bytes.update(other.dropped_bytes)
        self.edited_bytes.update(other.edited_bytes)
        self.reasons.update(other.reasons)
        self.lines_removed += other.lines_removed
        self.passages_removed += other.passages_removed


@dataclass
class CleaningStats:
    """Counts for the asset metadata: what came in, what went out, and why the rest was dropped.

    `dropped` / `dropped_bytes`: documents and their bytes removed, per filter; `edited_bytes`:
    bytes taken out of documents (normalisation, C4 line cleaning, passage dedup); `reasons`: the
    finer reason inside each filter; `lines_removed`: lines taken out by C4 line cleaning;
    `passages_removed`: repeated passages taken out by passage dedup.
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
    passages_removed: int = 0
    seconds: float = 0.0
    parts: int = 0
    funnel: list[dict] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return self.bytes_in / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def record(self, tally: Tally, steps: list[str]) -> None:
        """Take the run's tally: every step but normalisation listed (0 when it removed
        nothing), reasons nested per step and sorted, and the funnel built."""
        counted = [step for step in steps if step != NORMALIZE]
        self.dropped = {step: 0 for step in counted} | dict(tally.dropped)
        self.dropped_bytes = {step: 0 for step in counted} | dict(tally.dropped_bytes)
        self.edited_bytes = {NORMALIZE: tally.edited_bytes[NORMALIZE], **tally.edited_bytes}
        self.lines_removed = tally.lines_removed
        self.passages_removed = tally.passages_removed
        nested: dict[str, dict[str, int]] = {}
        for (name, reason), count in sorted(tally.reasons.items()):
            nested.setdefault(name, {})[reason] = count
        self.reasons = nested
        self.build_funnel(steps)

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


class DroppedSample:
    """The `size` removals with the smallest priority per filter: a uniform sample, bounded.

    The priority is a hash of the document's content, so the sample is deterministic for any
    number of workers and mergeable from per-batch candidates.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.heaps: dict[str, list[tuple]] = {}

    def offer(
        self, priority: int, name: str, reason: str, source: str, text: str, once: bool = False
    ) -> None:
        """Offer a removal; with `once`, a priority already held is not taken again (the same
        passage taken out of many documents is one sample, not many)."""
        if self.size <= 0:
            return
        heap = self.heaps.setdefault(name, [])
        if len(heap) >= self.size and -priority <= heap[0][0]:
            return
        if once and any(entry[0] == -priority for entry in heap):
            return
        item = (-priority, name, reason, source, text[:SAMPLE_MAX_CHARS], len(text))
        if len(heap) < self.size:
            heapq.heappush(heap, item)
        else:
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


def read_cleaning(folder: Path) -> dict | None:
    """`cleaning.json` of a cleaned corpus folder (`{"config": ..., "stats": ...}`), or None when
    it is missing or unreadable: its readers (report, model card, progress totals, advice) are
    worth having without it. Read through one no-follow descriptor."""
    from llm_pipeline.safe_open import UnsafeFileError, read_bytes

    try:
        data = json.loads(read_bytes(Path(folder) / CLEANING_FILE))
    except (OSError, ValueError, UnsafeFileError):
        return None
    return data if isinstance(data, dict) else None
