"""The train/validation split, decided once while cleaning, on a key that survives cleaning.

Why each rule:

- **Key.** A document's side hangs on `split_key`: a 64-bit hash of its *raw* text (the chunk
  `raw_corpus` wrote, before normalisation and filtering). A cleaning setting that edits texts
  (C4 line removal, normalisation) never moves a surviving document, and adding documents never
  moves existing ones while the fixed cut below applies.
- **Size in bytes.** The fixed cut `key <= val_fraction * 2**64` is used when it gives a byte
  share within [val_fraction / 2, 2 * val_fraction] and at least `min_val_docs` documents (large
  corpora). Otherwise (small corpora, a few long chunks of one book) units are taken in key
  order until the share reaches `val_fraction`, never a unit that would take it above twice
  `val_fraction`; `min_val_docs` asks for more documents only while the share stays within
  1.25 × `val_fraction` (`MIN_DOCS_SLACK`). The unit is the
  `raw_corpus` chunk (`max_doc_chars`), so a one-file book is split by sections.
- **Leak-free.** Units are clusters, not documents: near-copies (MinHash estimate at least
  `CLUSTER_JACCARD`, well below the dedup threshold) and texts that share at least
  `CLUSTER_CONTAINMENT` of their sampled word 8-grams with another (a short text inside a long
  one) go to one side together. A cluster's key is its smallest member key.

Memory: a few numbers per document (key, bytes, cluster parent); the 8-gram and band keys are
spilled to disk by hash range (`dedup.KeySpill`) and resolved one range at a time.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from llm_pipeline.text.dedup import KeySpill, shared_key_pairs
from llm_pipeline.text.minhash import (
    _GROUP_CHARS,  # the per-byte index arrays of a group cost ~40 bytes per character
    _MIX,
    MinHashConfig,
    MinHasher,
    _splitmix,
    estimated_jaccard,
)

TRAIN, VAL = "train", "val"
SPLIT_FILE = "split.json"
SPLIT_RULE_VERSION = 1
CLUSTER_JACCARD = 0.4
CLUSTER_CONTAINMENT = 0.3
GRAM_WORDS = 8
# One word 8-gram in GRAM_SAMPLE is kept, chosen by its hash: the same gram is kept in every
# document, so shared sampled grams estimate shared grams at 1/GRAM_SAMPLE of the cost.
GRAM_SAMPLE = 4
# A gram in more documents is boilerplate: only its first documents (by index) are paired.
MAX_GRAM_DOCS = 16
# `min_val_docs` adds documents only while the share stays within this many times the target.
MIN_DOCS_SLACK = 1.25


def split_key(raw_text: str) -> int:
    """The 64-bit split key of a document: a hash of its raw text, before any cleaning."""
    digest = hashlib.blake2b(raw_text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


_GRAM_HASHER = MinHasher(MinHashConfig(ngram=GRAM_WORDS, bands=1, rows=1))


def sampled_grams(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(gram hashes, index of the text each belongs to) of the sampled word 8-grams, with the
    words read as MinHash reads them (lower case, punctuation dropped)."""
    grams, owners = [np.zeros(0, np.uint64)], [np.zeros(0, np.int64)]
    start, size = 0, 0
    for i, text in enumerate(texts):
        size += len(text)
        if size >= _GROUP_CHARS or i == len(texts) - 1:
            words, docs = _GRAM_HASHER._word_hashes(texts[start : i + 1])
            count = len(words) - GRAM_WORDS + 1
            if count > 0:
                h = words[:count].copy()
                for k in range(1, GRAM_WORDS):
                    h = h * _MIX + words[k : k + count]
                inside = docs[:count] == docs[GRAM_WORDS - 1 :]
                h, who = _splitmix(h[inside]), docs[:count][inside]
                keep = h % np.uint64(GRAM_SAMPLE) == 0
                grams.append(h[keep])
                owners.append(who[keep] + start)
            start, size = i + 1, 0
    return np.concatenate(grams), np.concatenate(owners)


def gram_pair_counts(spill: KeySpill, scratch: Path, allowed=None):
    """Yield (a, b, shared sampled grams) for document pairs, one hash range at a time.

    `allowed(a, b)` (arrays) keeps only some pairs (the leakage check keeps val-train pairs).
    """
    pairs = KeySpill(scratch)
    for records in spill.iter_partitions():
        keys, docs = records["key"], records["doc"]
        if len(keys) < 2:
            continue
        fresh = np.concatenate(([True], (keys[1:] != keys[:-1]) | (docs[1:] != docs[:-1])))
        keys, docs = keys[fresh], docs[fresh]
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        lengths = np.minimum(np.diff(np.append(starts, len(keys))), MAX_GRAM_DOCS)
        for length in np.unique(lengths[lengths >= 2]).tolist():
            runs = starts[lengths == length]
            i, j = np.triu_indices(length, 1)
            a = docs[runs[:, None] + i[None, :]].ravel().astype(np.uint64)
            b = docs[runs[:, None] + j[None, :]].ravel().astype(np.uint64)
            if allowed is not None:
                ok = allowed(a, b)
                a, b = a[ok], b[ok]
            pairs.add((a << np.uint64(32)) | b, np.zeros(len(a), np.uint32))
    for records in pairs.iter_partitions():
        codes, counts = np.unique(records["key"], return_counts=True)
        yield (
            (codes >> np.uint64(32)).astype(np.int64),
            (codes & np.uint64(0xFFFFFFFF)).astype(np.int64),
            counts,
        )


class Clusters:
    """Union-find over document indices in one array (bounded: 4 bytes per document)."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return int(root)

    def union_pairs(self, a: np.ndarray, b: np.ndarray) -> int:
        joined = 0
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)
                joined += 1
        return joined

    def roots(self) -> np.ndarray:
        """Each document's cluster root (its smallest index)."""
        parent = self.parent
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent[:] = grand


def join_near_copies(
    spill: KeySpill, signatures: np.ndarray, rows: np.ndarray, clusters: Clusters
) -> int:
    """Join documents sharing a low-threshold LSH bucket whose MinHash estimate is at least
    `CLUSTER_JACCARD`; `spill` holds the re-banded keys (`cluster_hasher`), document `i`'s
    signature is `signatures[rows[i]]` (a memmap: only candidate rows are read)."""
    joined = 0
    for records in spill.iter_partitions():
        first, later = shared_key_pairs(records)
        if len(first) == 0:
            continue
        code = np.unique((first.astype(np.uint64) << np.uint64(32)) | later)
        a = (code >> np.uint64(32)).astype(np.int64)
        b = (code & np.uint64(0xFFFFFFFF)).astype(np.int64)
        near = estimated_jaccard(signatures[rows[a]], signatures[rows[b]]) >= CLUSTER_JACCARD
        joined += clusters.union_pairs(a[near], b[near])
    return joined


CLUSTER_BANDS = 32


def cluster_hasher(minhash: MinHashConfig) -> MinHasher:
    """The first signature entries cut into up to `CLUSTER_BANDS` bands of 2 rows: candidates
    from about 0.25 Jaccard (95% at 0.3), where dedup's 14 x 8 bands start near 0.7. Use with
    `signatures[:, :hasher.config.num_perm]`."""
    rows = 2 if minhash.num_perm >= 2 else 1
    bands = min(minhash.num_perm // rows, CLUSTER_BANDS)
    return MinHasher(MinHashConfig(ngram=minhash.ngram, bands=bands, rows=rows))


def join_containing(spill: KeySpill, sampled: np.ndarray, scratch: Path, clusters: Clusters) -> int:
    """Join pairs where the smaller text shares at least `CLUSTER_CONTAINMENT` of its sampled
    8-grams with the other (a short text inside a longer one, a near-copy below the dedup
    threshold)."""
    joined = 0
    for a, b, count in gram_pair_counts(spill, scratch):
        smaller = np.minimum(sampled[a], sampled[b])
        hit = count >= CLUSTER_CONTAINMENT * np.maximum(smaller, 1)
        joined += clusters.union_pairs(a[hit], b[hit])
    return joined


@dataclass
class SplitSummary:
    """How the split was made and what each side holds (written as `split.json`)."""

    rule: str
    mode: str
    val_fraction: float
    min_val_docs: int
    keys_sha256: str
    train_docs: int
    val_docs: int
    train_bytes: int
    val_bytes: int
    clusters_joined: int = 0
    within_bounds: bool = True

    @property
    def val_share(self) -> float:
        return self.val_bytes / max(self.train_bytes + self.val_bytes, 1)

    def identity(self) -> dict:
        """What names a validation set: the rule and the hash of its documents' keys."""
        return {"rule": self.rule, "keys_sha256": self.keys_sha256}

    def to_dict(self) -> dict:
        return {**asdict(self), "val_share": round(self.val_share, 6)}

    @classmethod
    def from_dict(cls, data: dict) -> SplitSummary:
        return cls(**{k: v for k, v in data.items() if k != "val_share"})


def split_rule(val_fraction: float, min_val_docs: int) -> str:
    return (
        f"v{SPLIT_RULE_VERSION}: blake2b(raw text) clusters (minhash>={CLUSTER_JACCARD}, "
        f"8-gram containment>={CLUSTER_CONTAINMENT}); val_fraction={val_fraction}; "
        f"min_val_docs={min_val_docs}"
    )


def keys_digest(keys: np.ndarray) -> str:
    """SHA-256 of the sorted keys: the identity of a set of documents."""
    return hashlib.sha256(np.sort(keys.astype(">u8")).tobytes()).hexdigest()


def assign_sides(
    keys: np.ndarray,
    n_bytes: np.ndarray,
    roots: np.ndarray,
    val_fraction: float,
    min_val_docs: int,
) -> tuple[np.ndarray, SplitSummary]:
    """One bool per document (True: validation), whole clusters at a time (see the module)."""
    n = len(keys)
    if n < 2:
        raise ValueError(f"need at least 2 documents to split into train and validation, got {n}")
    cluster_key = np.full(n, np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(cluster_key, roots, keys)
    cluster_bytes = np.bincount(roots, weights=n_bytes, minlength=n)
    cluster_docs = np.bincount(roots, minlength=n)
    live = np.flatnonzero(cluster_docs)
    total = float(n_bytes.sum())
    target = val_fraction * total
    cut = np.uint64(min(int(val_fraction * 2**64), 2**64 - 1))
    fixed = live[cluster_key[live] <= cut]
    fixed_bytes = cluster_bytes[fixed].sum()
    if (
        target / 2 <= fixed_bytes <= 2 * target
        and cluster_docs[fixed].sum() >= min_val_docs
        and len(fixed) < len(live)
    ):
        mode, chosen = "fixed cut", fixed
    else:
        mode, chosen = "sized in key order", _sized(live, cluster_key, cluster_bytes,
                                                    cluster_docs, target, min_val_docs)  # fmt: skip
    within = True
    if len(chosen) == 0:  # every cluster is over twice the target: take the smallest one
        chosen = live[[int(np.argmin(cluster_bytes[live]))]]
        mode, within = "smallest cluster (every unit is over twice val_fraction)", False
    val_cluster = np.zeros(n, dtype=bool)
    val_cluster[chosen] = True
    is_val = val_cluster[roots]
    summary = SplitSummary(
        rule=split_rule(val_fraction, min_val_docs),
        mode=mode,
        val_fraction=val_fraction,
        min_val_docs=min_val_docs,
        keys_sha256=keys_digest(keys[is_val]),
        train_docs=int((~is_val).sum()),
        val_docs=int(is_val.sum()),
        train_bytes=int(n_bytes[~is_val].sum()),
        val_bytes=int(n_bytes[is_val].sum()),
        within_bounds=within,
    )
    return is_val, summary


def _sized(live, cluster_key, cluster_bytes, cluster_docs, target, min_val_docs) -> np.ndarray:
    order = live[np.argsort(cluster_key[live], kind="stable")]
    chosen: list[int] = []
    size = docs = 0.0
    for c in order.tolist():
        grown = size + cluster_bytes[c]
        if len(chosen) >= len(live) - 1:
            break
        if size < target:
            # Never past twice the target, and a unit that would overshoot more than it fills
            # is passed over (a one-book corpus of 20 kB sections lands near val_fraction).
            if grown > 2 * target or (chosen and grown - target > target - size):
                continue
        elif docs >= min_val_docs:
            break
        elif grown > MIN_DOCS_SLACK * target:  # more documents, but only a little more text
            continue
        chosen.append(c)
        size, docs = grown, docs + cluster_docs[c]
    return np.asarray(chosen, dtype=np.int64)


def decide_split(
    batches,
    kept: np.ndarray,
    signatures: np.ndarray | None,
    minhash: MinHashConfig,
    val_fraction: float,
    min_val_docs: int,
    scratch: Path,
) -> tuple[np.ndarray, SplitSummary]:
    """The side of every staged document (True: validation; False for dropped ones).

    `batches` are the staged record batches (`split_key`, `text`, `n_bytes`) in order, `kept`
    one bool per staged document, `signatures` the dedup MinHash signatures (a memmap, or None
    when near dedup is off: then only the 8-gram containment joins documents)."""
    rows = np.flatnonzero(kept)
    m = len(rows)
    keys = np.zeros(m, np.uint64)
    n_bytes = np.zeros(m, np.int64)
    sampled = np.zeros(m, np.int64)
    grams = KeySpill(scratch / "grams")
    pos = offset = 0
    for batch in batches:
        keep = kept[offset : offset + batch.num_rows]
        offset += batch.num_rows
        if not keep.any():
            continue
        texts = [t for t, k in zip(batch.column("text").to_pylist(), keep.tolist()) if k]
        count = len(texts)
        keys[pos : pos + count] = batch.column("split_key").to_numpy()[keep]
        n_bytes[pos : pos + count] = batch.column("n_bytes").to_numpy()[keep]
        hashes, owners = sampled_grams(texts)
        grams.add(hashes, (owners + pos).astype(np.uint32))
        sampled[pos : pos + count] = np.bincount(owners, minlength=count)
        pos += count
    if m < 2:
        summary = SplitSummary(
            split_rule(val_fraction, min_val_docs), "too few documents to split", val_fraction,
            min_val_docs, keys_digest(keys[:0]), m, 0, int(n_bytes.sum()), 0, 0, False,
        )  # fmt: skip
        return np.zeros(len(kept), dtype=bool), summary
    clusters = Clusters(m)
    joined = join_containing(grams, sampled, scratch / "gram-pairs", clusters)
    if signatures is not None:
        hasher = cluster_hasher(minhash)
        width = hasher.config.num_perm
        bands = KeySpill(scratch / "bands")
        for lo in range(0, m, 1 << 16):
            index = np.arange(lo, min(lo + (1 << 16), m))
            sig = np.asarray(signatures[rows[index], :width])
            has = sig[:, 0] != np.iinfo(np.uint32).max
            band_keys = hasher.band_keys(sig[has])
            bands.add(band_keys.ravel(), np.repeat(index[has], band_keys.shape[1]))
        joined += join_near_copies(bands, signatures, rows, clusters)
    is_val_kept, summary = assign_sides(keys, n_bytes, clusters.roots(), val_fraction,
                                        min_val_docs)  # fmt: skip
    summary.clusters_joined = joined
    is_val = np.zeros(len(kept), dtype=bool)
    is_val[rows] = is_val_kept
    return is_val, summary
