"""Which documents must share a side of the split: links between documents, and clusters that
never outgrow what one side can hold.

Two kinds of link, each with a strength in [0, 1]:

- **containment**: the share of the smaller text's sampled word 8-grams that the other text
  holds, when at least `CLUSTER_CONTAINMENT` (a short text inside a long one, a quoted reply);
  a gram in more than `MAX_GRAM_DOCS` documents pairs the later ones with its first only, so a
  passage in hundreds of documents links them all at a linear cost;
- **near copy**: the MinHash estimate of the Jaccard similarity, when at least
  `CLUSTER_JACCARD` (well below the dedup threshold: an edited copy that dedup kept).

Links are followed strongest first (in bands of 0.05; within a band in an order that hangs on
the documents' split keys, so edits and growth elsewhere do not reorder them), and a link is
followed only while the cluster it would make holds at most `cap` bytes (the split passes
`val_fraction` of the corpus: a cluster that can go to validation whole). Links are not
transitive without limit: text that shares passages (clause libraries, quoted replies, shared
footers) chains every document to every other, and followed blindly, puts the whole corpus in
one cluster, which then lands on one side. A link that is not followed is *cut*: the clusters at
its two ends are marked, and the split sends marked clusters to training unless it cannot fill
validation without them, because a marked cluster shares text with a cluster that may land on
the other side.

Memory: sampled 8-grams, band keys and document pairs are spilled by hash range
(`dedup.KeySpill`), links by strength band (`LinkSpill`); in memory stay a few numbers per
document, one band of links (12 bytes a link) and the links cut (16 bytes each).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from llm_pipeline.text.dedup.exact import KeySpill, index_ranges, shared_key_pairs
from llm_pipeline.text.dedup.minhash import (
    MinHashConfig,
    MinHasher,
    _splitmix,
    estimated_jaccard,
    word_ngrams,
)

CLUSTER_JACCARD = 0.4
# 0.3 let documents that had shared passages, once passage dedup took those out, keep a fifth
# to a quarter of their text in common on opposite sides (the built-in corpus: 1.3% of
# validation 13-grams in training text; with 0.2, 0.1-0.4% over val_fraction 3-10%).
CLUSTER_CONTAINMENT = 0.2
GRAM_WORDS = 8
# One word 8-gram in GRAM_SAMPLE is kept, chosen by its hash: the same gram is kept in every
# document, so shared sampled grams estimate shared grams at 1/GRAM_SAMPLE of the cost.
GRAM_SAMPLE = 4
# A gram's first documents (by index) are paired with each other; a gram in more documents pairs
# the rest with its first document only (the leakage measure, text/split/leakage.py, counts all
# pairs).
MAX_GRAM_DOCS = 16
CLUSTER_BANDS = 32


def sampled_grams(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(gram hashes, index of the text each belongs to) of the sampled word 8-grams."""
    hashes, owners = word_ngrams(texts, (GRAM_WORDS,))[GRAM_WORDS]
    keep = hashes % np.uint64(GRAM_SAMPLE) == 0
    return hashes[keep], owners[keep]


def gram_pair_counts(spill: KeySpill, scratch: Path) -> Iterator[tuple]:
    """Yield (a, b, shared sampled grams) for document pairs, one hash range at a time."""
    pairs = KeySpill(scratch, spread=True)
    for records in spill.iter_partitions():
        keys, docs = records["key"], records["doc"]
        if len(keys) < 2:
            continue
        fresh = np.concatenate(([True], (keys[1:] != keys[:-1]) | (docs[1:] != docs[:-1])))
        keys, docs = keys[fresh], docs[fresh]
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        runs_of = np.diff(np.append(starts, len(keys)))
        lengths = np.minimum(runs_of, MAX_GRAM_DOCS)
        for length in np.unique(lengths[lengths >= 2]).tolist():
            runs = starts[lengths == length]
            i, j = np.triu_indices(length, 1)
            a = docs[runs[:, None] + i[None, :]].ravel().astype(np.uint64)
            b = docs[runs[:, None] + j[None, :]].ravel().astype(np.uint64)
            pairs.add((a << np.uint64(32)) | b, np.zeros(len(a), np.uint32))
        # A popular gram's later documents pair with its first one only (a star: linear, not
        # quadratic), so a passage in hundreds of documents still links each to the first.
        popular = np.flatnonzero(runs_of > MAX_GRAM_DOCS)
        if len(popular):
            extra = runs_of[popular] - MAX_GRAM_DOCS
            later = index_ranges(starts[popular] + MAX_GRAM_DOCS, extra)
            hub = np.repeat(docs[starts[popular]], extra).astype(np.uint64)
            b = docs[later].astype(np.uint64)
            pairs.add((hub << np.uint64(32)) | b, np.zeros(len(b), np.uint32))
    for records in pairs.iter_partitions():
        codes, counts = np.unique(records["key"], return_counts=True)
        yield (
            (codes >> np.uint64(32)).astype(np.int64),
            (codes & np.uint64(0xFFFFFFFF)).astype(np.int64),
            counts,
        )


def cluster_hasher(minhash: MinHashConfig) -> MinHasher:
    """The first signature entries cut into up to `CLUSTER_BANDS` bands of 2 rows: candidates
    from about 0.25 Jaccard (95% at 0.3), where dedup's 14 x 8 bands start near 0.7. Use with
    `signatures[:, :hasher.config.num_perm]`."""
    rows = 2 if minhash.num_perm >= 2 else 1
    bands = min(minhash.num_perm // rows, CLUSTER_BANDS)
    return MinHasher(MinHashConfig(ngram=minhash.ngram, bands=bands, rows=rows))


LINK = np.dtype([("a", "<u4"), ("b", "<u4"), ("strength", "<f4")])


class LinkSpill:
    """Links (a < b, strength) appended to one file per strength band of 1/`BANDS`, read back
    strongest band first: memory is one band's worth, not every link of the corpus."""

    BANDS = 20

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.records = 0

    def add(self, a: np.ndarray, b: np.ndarray, strength: np.ndarray) -> None:
        if len(a) == 0:
            return
        records = np.empty(len(a), LINK)
        records["a"], records["b"] = np.minimum(a, b), np.maximum(a, b)
        records["strength"] = strength
        band = np.clip((strength * self.BANDS).astype(np.int64), 0, self.BANDS - 1)
        for value in np.unique(band).tolist():
            with open(self.folder / f"links-{value:02d}.bin", "ab") as fh:
                records[band == value].tofile(fh)
        self.records += len(records)

    def strongest_first(self, keys: np.ndarray) -> Iterator[np.ndarray]:
        """Each band's distinct links, strongest band first. Within a band the order is a hash
        of the two documents' split keys, not their strengths or positions: a small edit to a
        text or a document added elsewhere leaves the order, and so the clusters, as they were.
        """
        for value in range(self.BANDS - 1, -1, -1):
            path = self.folder / f"links-{value:02d}.bin"
            if not path.exists():
                continue
            records = np.fromfile(path, dtype=LINK)
            pair = (records["a"].astype(np.uint64) << np.uint64(32)) | records["b"]
            _, first = np.unique(pair, return_index=True)
            records = records[first]
            a, b = keys[records["a"]], keys[records["b"]]
            order = _splitmix(np.minimum(a, b) ^ _splitmix(np.maximum(a, b)))
            yield records[np.argsort(order, kind="stable")]


class BoundedClusters:
    """Union-find over documents that joins two clusters only while the result holds at most
    `cap` bytes, and remembers the links it did not follow."""

    def __init__(self, n_bytes: np.ndarray, cap: float) -> None:
        self.parent = np.arange(len(n_bytes), dtype=np.int64)
        self.size = n_bytes.astype(np.float64).copy()
        self.cap = cap
        self.joined = 0
        self._cut: list[np.ndarray] = []

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = int(parent[root])
        while parent[x] != root:
            parent[x], x = root, int(parent[x])
        return root

    def link(self, a: np.ndarray, b: np.ndarray) -> None:
        """Follow the links (a[i], b[i]) in order, each while the joined cluster fits `cap`."""
        cut = []
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx == ry:
                continue
            if self.size[rx] + self.size[ry] > self.cap:
                cut.append((x, y))
                continue
            lo, hi = (rx, ry) if rx < ry else (ry, rx)
            self.parent[hi] = lo
            self.size[lo] += self.size[hi]
            self.joined += 1
        if cut:
            self._cut.append(np.asarray(cut, dtype=np.int64))

    def roots(self) -> np.ndarray:
        """Each document's cluster root (its smallest index)."""
        parent = self.parent
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent.copy()
            parent[:] = grand

    def cut_between(self, roots: np.ndarray) -> tuple[int, np.ndarray]:
        """(links cut between two final clusters, one bool per root: the cluster has one). A
        cut link whose ends were joined later by another path joins nothing and marks
        nothing."""
        marked = np.zeros(len(roots), dtype=bool)
        if not self._cut:
            return 0, marked
        cut = np.unique(np.concatenate(self._cut), axis=0)  # a pair cut in two bands: once
        ra, rb = roots[cut[:, 0]], roots[cut[:, 1]]
        apart = ra != rb
        marked[ra[apart]] = True
        marked[rb[apart]] = True
        return int(apart.sum()), marked


def containment_links(
    spill: KeySpill, sampled: np.ndarray, scratch: Path, links: LinkSpill
) -> None:
    """Link pairs where the smaller text shares at least `CLUSTER_CONTAINMENT` of its sampled
    8-grams with the other; the strength is that share."""
    for a, b, count in gram_pair_counts(spill, scratch):
        share = count / np.maximum(np.minimum(sampled[a], sampled[b]), 1)
        hit = share >= CLUSTER_CONTAINMENT
        links.add(a[hit], b[hit], np.minimum(share[hit], 1.0))


def near_copy_links(spill: KeySpill, signatures: np.ndarray, links: LinkSpill) -> None:
    """Link documents sharing a low-threshold LSH bucket (`cluster_hasher`) whose MinHash
    estimate is at least `CLUSTER_JACCARD`; the strength is the estimate. `signatures` may be
    a memmap: only candidate rows are read."""
    for records in spill.iter_partitions():
        first, later = shared_key_pairs(records)
        if len(first) == 0:
            continue
        code = np.unique((first.astype(np.uint64) << np.uint64(32)) | later)
        a = (code >> np.uint64(32)).astype(np.int64)
        b = (code & np.uint64(0xFFFFFFFF)).astype(np.int64)
        jaccard = estimated_jaccard(signatures[a], signatures[b])
        near = jaccard >= CLUSTER_JACCARD
        links.add(a[near], b[near], jaccard[near])
