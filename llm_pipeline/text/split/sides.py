"""The train/validation split, decided once while cleaning, on a key that survives cleaning.

Why each rule:

- **Key.** A document's side hangs on `split_key`: a 64-bit hash of its *raw* text (the chunk
  `raw_corpus` wrote, before normalisation and filtering). A cleaning setting that edits texts
  (C4 line removal, normalisation, passage dedup) never moves a surviving document by itself,
  and adding documents never moves existing ones while the fixed cut below applies.
- **Units are clusters** (`clusters.py`): near-copies and texts that hold much of another go to
  one side together, but no cluster grows past `val_fraction` of the bytes (links are followed
  strongest first and the rest are cut), so text that shares passages can never chain the whole
  corpus into one unit. A unit's key is a hash of its smallest member key: every unit, large or
  small, lands in validation with the same chance (the smallest key of n documents is small
  more often the larger n is; its hash is not).
- **Units with cut links train.** A unit that lost a link to another unit shares text with it;
  validation draws from the other units first and takes such units only when it cannot
  otherwise hold `val_fraction / 2` of the bytes (recorded as `marked_val_docs`).
- **Size in bytes.** The fixed cut `hash <= val_fraction * 2**64` is used when it gives a byte
  share within [val_fraction / 2, 2 * val_fraction] and at least `min_val_docs` documents (large
  corpora). Otherwise (small corpora, a few long chunks of one book) units are taken in hash
  order until the share reaches `val_fraction`, never a unit that would take it above twice
  `val_fraction`; `min_val_docs` asks for more documents only while the share stays within
  1.25 × `val_fraction` (`MIN_DOCS_SLACK`). The unit is at most the `raw_corpus` chunk
  (`max_doc_chars`), so a one-file book is split by sections.
- **Bounds.** Validation ends within [val_fraction / 2, 2 × val_fraction] of the bytes and both
  sides hold documents whenever units small enough exist; only a corpus of too few (or too
  large) units ends outside, and `SplitSummary.problem` says so in one line with the fix.

Memory: a few numbers per document (key, bytes, cluster parent); grams, band keys and links are
spilled to disk (`clusters.py`).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from llm_pipeline.text.dedup.exact import KeySpill
from llm_pipeline.text.dedup.minhash import MinHashConfig, MinHasher, _splitmix
from llm_pipeline.text.split.clusters import (
    CLUSTER_CONTAINMENT,
    CLUSTER_JACCARD,
    BoundedClusters,
    LinkSpill,
    cluster_hasher,
    containment_links,
    near_copy_links,
    sampled_grams,
)

TRAIN, VAL = "train", "val"
SPLIT_FILE = "split.json"
SPLIT_RULE_VERSION = 2
# `min_val_docs` adds documents only while the share stays within this many times the target.
MIN_DOCS_SLACK = 1.25


def split_key(raw_text: str) -> int:
    """The 64-bit split key of a document: a hash of its raw text, before any cleaning."""
    digest = hashlib.blake2b(raw_text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass
class SplitSummary:
    """How the split was made and what each side holds (written as `split.json`).

    `units`: clusters that went to one side whole; `largest_unit_share`: the largest one's share
    of the bytes; `cap_bytes`: the most a cluster may hold; `links` and `links_cut`: links
    between two clusters, followed or not followed because the joined cluster would outgrow
    the cap (a link between documents already in one cluster counts in neither);
    `marked_docs` / `marked_val_docs`: documents in clusters with a cut link, and how many of
    them validation had to take. Files written before a field existed read with its default."""

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
    units: int = 0
    largest_unit_share: float = 0.0
    smallest_unit_share: float = 0.0
    cap_bytes: int = 0
    links: int = 0
    links_cut: int = 0
    marked_docs: int = 0
    marked_val_docs: int = 0

    @property
    def val_share(self) -> float:
        return self.val_bytes / max(self.train_bytes + self.val_bytes, 1)

    def identity(self) -> dict:
        """What names a validation set: the rule and the hash of its documents' keys."""
        return {"rule": self.rule, "keys_sha256": self.keys_sha256}

    def decisions(self) -> str:
        """What the split did about text that links documents, in one sentence."""
        text = f"{self.clusters_joined:,} links joined documents into {self.units:,} units"
        if self.links_cut:
            text += (
                f"; {self.links_cut:,} links cut so that no unit holds more than "
                f"{self.val_fraction:.0%} of the bytes, and the {self.marked_docs:,} documents "
                f"at their ends train"
            )
            if self.marked_val_docs:
                text += f" (but {self.marked_val_docs:,}, which validation needed)"
        return text + "."

    def problem(self) -> str | None:
        """None when both sides hold documents and validation holds [val_fraction / 2,
        2 × val_fraction] of the bytes; otherwise one line with the cause and the fix."""
        low, high = self.val_fraction / 2, 2 * self.val_fraction
        if self.val_docs and self.train_docs and low <= self.val_share <= high:
            return None
        side = "validation" if not self.val_docs else "training" if not self.train_docs else ""
        where = (
            f"the {side} side is empty"
            if side
            else f"validation holds {self.val_share:.1%} of the bytes, outside "
            f"[{low:.1%}, {high:.1%}]"
        )
        return (
            f"{where}: too few units small enough to split finer ({self.units:,} unit"
            f"{'s' if self.units != 1 else ''}; the smallest holds "
            f"{self.smallest_unit_share:.1%} of the bytes, the largest "
            f"{self.largest_unit_share:.1%}). Add text, or lower raw_corpus max_doc_chars so "
            f"long files are cut into more documents, or raise val_fraction."
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "val_share": round(self.val_share, 6)}

    @classmethod
    def from_dict(cls, data: dict) -> SplitSummary:
        return cls(**{k: v for k, v in data.items() if k != "val_share"})


def split_rule(val_fraction: float, min_val_docs: int) -> str:
    return (
        f"v{SPLIT_RULE_VERSION}: blake2b(raw text) clusters (minhash>={CLUSTER_JACCARD}, "
        f"8-gram containment>={CLUSTER_CONTAINMENT}; none over val_fraction of the bytes, "
        f"clusters with cut links train first); val_fraction={val_fraction}; "
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
    marked: np.ndarray | None = None,
) -> tuple[np.ndarray, SplitSummary]:
    """One bool per document (True: validation), whole clusters at a time (see the module).

    `roots` is each document's cluster (an index; `np.arange(n)` for one document a unit) and
    `marked` one bool per cluster index: the cluster had a link cut (it trains if it can)."""
    n = len(keys)
    if n < 2:
        raise ValueError(f"need at least 2 documents to split into train and validation, got {n}")
    smallest = np.full(n, np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(smallest, roots, keys)
    cluster_key = _splitmix(smallest)
    cluster_bytes = np.bincount(roots, weights=n_bytes, minlength=n)
    cluster_docs = np.bincount(roots, minlength=n)
    live = np.flatnonzero(cluster_docs)
    marked = np.zeros(n, dtype=bool) if marked is None else marked
    clean = live[~marked[live]]
    total = float(n_bytes.sum())
    target = val_fraction * total
    cut = np.uint64(min(int(val_fraction * 2**64), 2**64 - 1))
    fixed = clean[cluster_key[clean] <= cut]
    fixed_bytes = cluster_bytes[fixed].sum()
    if (
        target / 2 <= fixed_bytes <= 2 * target
        and cluster_docs[fixed].sum() >= min_val_docs
        and len(fixed) < len(live)
    ):
        mode, chosen = "fixed cut", fixed
    else:
        # Unmarked units first, in hash order; marked ones only if those cannot fill it.
        rest = live[marked[live]]
        order = np.concatenate(
            [
                clean[np.argsort(cluster_key[clean], kind="stable")],
                rest[np.argsort(cluster_key[rest], kind="stable")],
            ]
        )
        mode = "sized in hash order"
        chosen = _sized(order, len(clean), cluster_bytes, cluster_docs, target, min_val_docs)
    if len(chosen) == 0:  # every unit is over twice the target: take the smallest one
        chosen = live[[int(np.argmin(cluster_bytes[live]))]]
        mode = "smallest unit (every unit is over twice val_fraction)"
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
        units=len(live),
        largest_unit_share=round(float(cluster_bytes[live].max()) / max(total, 1.0), 6),
        smallest_unit_share=round(float(cluster_bytes[live].min()) / max(total, 1.0), 6),
        marked_docs=int(marked[roots].sum()),
        marked_val_docs=int((marked[roots] & is_val).sum()),
    )
    summary.within_bounds = summary.problem() is None
    return is_val, summary


def _sized(order, n_clean, cluster_bytes, cluster_docs, target, min_val_docs) -> np.ndarray:
    """A prefix of `order` (units in hash order) up to `target` bytes, then, while fewer than
    `min_val_docs` documents, smaller units that keep the share within `MIN_DOCS_SLACK` × the
    target. The units after the first `n_clean` (marked ones) only while under half the target.

    The prefix ends at the first unit that reaches the target, or, once half of it is held, at
    the first that would overshoot past the slack (a one-book corpus of 20 kB sections lands
    near val_fraction); only a unit that alone would take the share past twice the target is
    passed over. Which units come before the end does not otherwise depend on their sizes, so
    an edit or a new document moves the end by a unit, not the selection."""
    chosen: list[int] = []
    size = docs = 0.0
    filled = False
    for rank, c in enumerate(order.tolist()):
        grown = size + cluster_bytes[c]
        if len(chosen) >= len(order) - 1:
            break
        if rank >= n_clean and size >= target / 2:
            break
        if not filled:
            if grown > 2 * target:  # never past twice the target
                continue
            if size >= target / 2 and grown > MIN_DOCS_SLACK * target:
                filled = True  # within bounds, and this unit would overshoot: stop here
        if filled:
            if docs >= min_val_docs:
                break
            if grown > MIN_DOCS_SLACK * target:  # more documents, but only a little more text
                continue
        chosen.append(c)
        size, docs = grown, docs + cluster_docs[c]
        filled = filled or size >= target
    return np.asarray(chosen, dtype=np.int64)


def decide_split(
    batches,
    signatures: np.ndarray | None,
    minhash: MinHashConfig,
    val_fraction: float,
    min_val_docs: int,
    scratch: Path,
) -> tuple[np.ndarray, SplitSummary]:
    """The side of every document in `batches` (True: validation), in order.

    `batches` are record batches with `split_key`, `text`, `n_bytes`, `row` and `edited`:
    `row` is the document's row in `signatures` (the dedup MinHash signatures, a memmap, or None
    when near dedup is off: then only 8-gram containment links documents), and `edited` says
    its text changed after those were computed (passage dedup), so its signature is computed
    again from the text here."""
    keys, sizes, counts = [], [], []
    grams = KeySpill(scratch / "grams")
    bands = KeySpill(scratch / "bands")
    signature_file = scratch / "signatures.bin"
    hasher = band_hasher = None
    if signatures is not None:
        hasher, band_hasher = MinHasher(minhash), cluster_hasher(minhash)
    pos = 0
    with open(signature_file, "wb") as sig_out:
        for batch in batches:
            texts = batch.column("text").to_pylist()
            count = len(texts)
            keys.append(batch.column("split_key").to_numpy())
            sizes.append(batch.column("n_bytes").to_numpy())
            hashes, owners = sampled_grams(texts)
            grams.add(hashes, (owners + pos).astype(np.uint32))
            counts.append(np.bincount(owners, minlength=count))
            if hasher is not None and band_hasher is not None:
                sig = np.array(signatures[batch.column("row").to_numpy()])
                edited = np.flatnonzero(batch.column("edited").to_numpy(zero_copy_only=False))
                if len(edited):
                    sig[edited] = hasher.signatures([texts[i] for i in edited.tolist()])
                sig.tofile(sig_out)
                has = np.flatnonzero(sig[:, 0] != np.iinfo(np.uint32).max)
                band_keys = band_hasher.band_keys(sig[has, : band_hasher.config.num_perm])
                bands.add(band_keys.ravel(), np.repeat(has + pos, band_keys.shape[1]))
            pos += count
    key = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    n_bytes = np.concatenate(sizes).astype(np.int64) if sizes else np.zeros(0, np.int64)
    if pos < 2:
        shutil.rmtree(scratch, ignore_errors=True)
        summary = SplitSummary(
            rule=split_rule(val_fraction, min_val_docs),
            mode="too few documents to split",
            val_fraction=val_fraction,
            min_val_docs=min_val_docs,
            keys_sha256=keys_digest(key[:0]),
            train_docs=pos,
            val_docs=0,
            train_bytes=int(n_bytes.sum()),
            val_bytes=0,
            within_bounds=False,
            units=pos,
            largest_unit_share=float(pos),
            smallest_unit_share=float(pos),
        )
        return np.zeros(pos, dtype=bool), summary
    links = LinkSpill(scratch / "links")
    containment_links(grams, np.concatenate(counts), scratch / "gram-pairs", links)
    if hasher is not None:
        local = np.memmap(signature_file, dtype=np.uint32, mode="r",
                          shape=(pos, hasher.config.num_perm))  # fmt: skip
        near_copy_links(bands, local, links)
        del local
    clusters = BoundedClusters(n_bytes, cap=val_fraction * float(n_bytes.sum()))
    for records in links.strongest_first(key):
        clusters.link(records["a"], records["b"])
    roots = clusters.roots()
    links_cut, marked = clusters.cut_between(roots)
    is_val, summary = assign_sides(key, n_bytes, roots, val_fraction, min_val_docs, marked)
    summary.clusters_joined = clusters.joined
    summary.cap_bytes = int(clusters.cap)
    summary.links = clusters.joined + links_cut
    summary.links_cut = links_cut
    shutil.rmtree(scratch, ignore_errors=True)  # gram pairs, links, signatures: not needed now
    return is_val, summary
