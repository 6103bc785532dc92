"""Deduplication in bounded memory: keys spilled to disk by hash range, resolved range by range.

Exact dedup (a 64-bit prefix of the content hash) and MinHash LSH (one 64-bit key per band) both
reduce to the same question: which documents share a key? Holding every key in a Python set costs
~100 bytes per document; here the keys are appended, 12 bytes a record, to `partitions` files
chosen by the key's top bits (a Grace hash partitioning), and each file is then sorted on its
own. Equal keys always land in the same file, so a file holds all the evidence about its keys and
memory is one file's worth (total / partitions), not the corpus's. A spill that never outgrew its
buffer (`buffer_records`, 12 MB) is resolved in memory as one partition: no files at all, which
on a small corpus saves hundreds of file creations per spill.

What still grows with the corpus is one byte per document (the drop decision) and the union-find
over confirmed near-duplicate pairs, which is proportional to the number of duplicates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from llm_pipeline.text.dedup.minhash import _splitmix, estimated_jaccard

RECORD = np.dtype([("key", "<u8"), ("doc", "<u4")])
KEEP, EXACT, NEAR = 0, 1, 2


class KeySpill:
    """Append (key, document index) records to disk, partitioned by the key's top bits."""

    def __init__(
        self,
        folder: Path,
        partitions: int = 256,
        buffer_records: int = 1 << 20,
        spread: bool = False,
    ) -> None:
        """`spread`: partition by a hash of the key, for keys that are not hashes themselves
        (a pair of document numbers) and would otherwise all share their top bits."""
        if partitions < 1 or partitions & (partitions - 1):
            raise ValueError(f"partitions must be a power of two, got {partitions}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.partitions = partitions
        self.shift = np.uint64(64 - max(partitions.bit_length() - 1, 0))
        self.buffer_records = buffer_records
        self.spread = spread
        self._pending: list[np.ndarray] = []
        self._pending_records = 0
        self._on_disk = False
        self.records = 0

    def _path(self, part: int) -> Path:
        return self.folder / f"keys-{part:04d}.bin"

    def add(self, keys: np.ndarray, docs: np.ndarray) -> None:
        """Queue records; they reach disk when the buffer is full or on `flush`."""
        records = np.empty(len(keys), dtype=RECORD)
        records["key"] = keys
        records["doc"] = docs
        self._pending.append(records)
        self._pending_records += len(records)
        self.records += len(records)
        if self._pending_records >= self.buffer_records:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        records = np.concatenate(self._pending)
        self._pending, self._pending_records = [], 0
        if self.partitions == 1:
            part_of = np.zeros(len(records), dtype=np.int64)
        else:
            keys = _splitmix(records["key"]) if self.spread else records["key"]
            part_of = (keys >> self.shift).astype(np.int64)
        order = np.argsort(part_of, kind="stable")
        records, part_of = records[order], part_of[order]
        bounds = np.searchsorted(part_of, np.arange(self.partitions + 1))
        self._on_disk = True
        for part in range(self.partitions):
            lo, hi = bounds[part], bounds[part + 1]
            if hi > lo:
                with open(self._path(part), "ab") as fh:
                    records[lo:hi].tofile(fh)

    def iter_partitions(self) -> Iterator[np.ndarray]:
        """Each partition's records, sorted by (key, doc); one partition in memory at a time
        (all of them at once while they still fit the buffer)."""
        if not self._on_disk:
            if self._pending:
                records = np.concatenate(self._pending)
                records.sort(order=["key", "doc"])
                yield records
            return
        self.flush()
        for part in range(self.partitions):
            path = self._path(part)
            if not path.exists():
                continue
            records = np.fromfile(path, dtype=RECORD)
            records.sort(order=["key", "doc"])
            yield records


def index_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices start[i], ..., start[i] + length[i] - 1 of every range, concatenated: the
    members of many runs at once, without a Python loop."""
    total = int(lengths.sum())
    within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + within


def shared_key_pairs(records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted records, (first document of each key, every later document with that key)."""
    keys, docs = records["key"], records["doc"]
    if len(keys) < 2:
        return np.zeros(0, np.uint32), np.zeros(0, np.uint32)
    same = keys[1:] == keys[:-1]
    run_start = np.where(np.concatenate(([True], ~same)), np.arange(len(keys)), 0)
    run_start = np.maximum.accumulate(run_start)
    later = np.flatnonzero(same) + 1
    return docs[run_start[later]], docs[later]


def mark_exact_duplicates(spill: KeySpill, decision: np.ndarray) -> int:
    """Mark every document whose key an earlier document has as EXACT; return how many."""
    marked = 0
    for records in spill.iter_partitions():
        _, later = shared_key_pairs(records)
        later = np.unique(later)
        fresh = later[decision[later] == KEEP]
        decision[fresh] = EXACT
        marked += len(fresh)
    return marked


class _UnionFind:
    """Union by smallest index, so a cluster's root is its first document (the one kept)."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while x != root:  # path compression
            parent[x], x = root, parent.get(x, x)
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            self.parent[hi] = lo
            self.parent.setdefault(lo, lo)


def mark_near_duplicates(
    spill: KeySpill,
    signatures: np.ndarray,
    threshold: float,
    decision: np.ndarray,
    pair_chunk: int = 200_000,
) -> int:
    """Mark near-duplicates NEAR: documents sharing an LSH bucket are candidate pairs, confirmed
    when their signatures agree on at least `threshold` of the entries; confirmed pairs are
    joined into clusters, and all but each cluster's first document are marked. Documents
    already marked (exact duplicates) are left out, as their first copy stands for them.

    `signatures` may be a read-only memmap: only the rows of candidate pairs are read.
    """
    union = _UnionFind()
    for records in spill.iter_partitions():
        first, later = shared_key_pairs(records)
        if len(first) == 0:
            continue
        live = (decision[first] == KEEP) & (decision[later] == KEEP)
        pair = np.unique((first[live].astype(np.uint64) << np.uint64(32)) | later[live])
        for lo in range(0, len(pair), pair_chunk):
            chunk = pair[lo : lo + pair_chunk]
            a = (chunk >> np.uint64(32)).astype(np.int64)
            b = (chunk & np.uint64(0xFFFFFFFF)).astype(np.int64)
            agree = estimated_jaccard(signatures[a], signatures[b])
            for x, y in zip(a[agree >= threshold].tolist(), b[agree >= threshold].tolist()):
                union.union(x, y)
    marked = 0
    for doc in list(union.parent):
        if union.find(doc) != doc and decision[doc] == KEEP:
            decision[doc] = NEAR
            marked += 1
    return marked
