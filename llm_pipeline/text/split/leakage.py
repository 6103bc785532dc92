"""How much of the validation text the training text already holds, on every word n-gram.

Two figures, measured on the cleaned table as written (its `split` column), independently of how
the split was made, so a hand-made or corrupted split is judged the same way:

- **Leaked bytes** (what the blocking `split_leakage` check bounds at 1%): the share of
  validation bytes in documents with at least `LEAK_CONTAINMENT` of their distinct word 8-grams
  inside ONE training document — a validation document that is mostly a copy of a training one.
- **13-gram overlap** (the contamination measure of the GPT-3 paper): the share of validation
  word 13-grams (with repeats) that occur anywhere in training text — shared passages, quoted
  text, boilerplate, however many documents share them.

Every gram counts, popular ones included: a passage in a thousand training documents is exactly
what a measure that skips popular grams cannot see. Words are read as MinHash reads them (lower
case, punctuation dropped).

How, in bounded memory: the validation documents' 8-grams and 13-grams are held in sorted
arrays (at most `VAL_SAMPLE_BYTES` of validation text: beyond it, a uniform sample of validation
documents, chosen by a hash of their row, is measured and the figures are shares of the sample;
nothing is ever skipped for being popular).
The training documents are streamed past them in batches. For each training document, its
8-grams found in validation are counted per validation document; 8-grams found in exactly the
same validation documents form one group, counted once, so a footer in every document costs
one step per training document, not one per gram.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llm_pipeline.text.dedup.exact import index_ranges
from llm_pipeline.text.dedup.minhash import _splitmix, word_ngrams

LEAK_CONTAINMENT = 0.5
MAX_LEAKED_SHARE = 0.01  # the blocking check's bound: at most 1% of validation bytes
GRAM_WORDS = 8
OVERLAP_WORDS = 13
MAX_OVERLAP_SHARE = 0.05  # the warning check's bound on validation 13-grams seen in training
# The validation text measured at most: its grams cost about 20 bytes of memory per byte of text
# while the index is built (154 MiB traced for 7.8 MB of validation text in 23 MB, in 3 s), so
# 8 MiB bounds the measure near 160 MiB; beyond it a uniform sample of validation documents
# (thousands of them) is measured.
VAL_SAMPLE_BYTES = 8 << 20
# Training documents per step, and (training, validation) document pairs per numpy block.
_TRAIN_BATCH = 2048
_PAIR_BLOCK = 1 << 22
# What a recorded figure was measured by: a figure under another rule is measured again.
LEAKAGE_RULE = (
    f"v2: share of val bytes with >={LEAK_CONTAINMENT} of their distinct word {GRAM_WORDS}-grams "
    f"(all grams) in one training document; share of val word {OVERLAP_WORDS}-grams found in "
    f"training text; val documents sampled beyond {VAL_SAMPLE_BYTES >> 20} MiB"
)


@dataclass
class Leakage:
    """Validation documents and bytes, those found (mostly) inside one training document, and
    the validation 13-grams found anywhere in training text.

    `measured_docs` / `measured_bytes`: the validation documents measured (all of them up to
    `VAL_SAMPLE_BYTES`, a uniform sample beyond); the shares are of those."""

    val_docs: int = 0
    val_bytes: int = 0
    leaked_docs: int = 0
    leaked_bytes: int = 0
    contained_docs: int = 0  # every 8-gram inside one training document
    measured_docs: int = 0
    measured_bytes: int = 0
    val_13grams: int = 0
    seen_13grams: int = 0

    @property
    def share(self) -> float:
        """Share of (measured) validation bytes in leaked documents."""
        return self.leaked_bytes / self.measured_bytes if self.measured_bytes else 0.0

    @property
    def overlap(self) -> float:
        """Share of validation word 13-grams that occur in training text."""
        return self.seen_13grams / self.val_13grams if self.val_13grams else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "share": round(self.share, 6), "overlap": round(self.overlap, 6)}

    @classmethod
    def from_dict(cls, data: dict) -> Leakage:
        """Read back `to_dict` (derived figures are recomputed; unknown keys are refused)."""
        known = {f.name for f in fields(cls)}
        extra = set(data) - known - {"share", "overlap"}
        if extra:
            raise TypeError(f"unexpected leakage fields {sorted(extra)}")
        return cls(**{k: v for k, v in data.items() if k in known})


def measure_leakage(parts: list[Path]) -> Leakage:
    """The leakage of the split written in `parts` (cleaned Parquet with `text`, `split`)."""
    sides, sizes = _sides(parts)
    measured = _measured_rows(sides, sizes)
    index = _ValidationIndex(_read_rows(parts, measured), len(measured))
    for texts in _read_rows(parts, np.flatnonzero(~sides)):
        index.scan_training(texts)
    leaked = index.best >= LEAK_CONTAINMENT
    measured_sizes = sizes[measured]
    return Leakage(
        val_docs=int(sides.sum()),
        val_bytes=int(sizes[sides].sum()),
        leaked_docs=int(leaked.sum()),
        leaked_bytes=int(measured_sizes[leaked].sum()),
        contained_docs=int((index.best >= 1.0).sum()),
        measured_docs=len(measured),
        measured_bytes=int(measured_sizes.sum()),
        val_13grams=int(index.overlap_counts.sum()),
        seen_13grams=int(index.overlap_counts[index.overlap_seen].sum()),
    )


def _sides(parts: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(is validation, UTF-8 bytes) per row of the parts, read without decoding the text."""
    sides, sizes = [np.zeros(0, bool)], [np.zeros(0, np.int64)]
    for part in parts:
        parquet = pq.ParquetFile(part, pre_buffer=False)
        if "split" not in parquet.schema_arrow.names:
            raise ValueError(f"{part}: no 'split' column (written before the split moved here)")
        for batch in parquet.iter_batches(columns=["text", "split"], batch_size=8192):
            sides.append(batch.column(1).to_numpy(zero_copy_only=False) == "val")
            sizes.append(pc.binary_length(batch.column(0)).to_numpy(zero_copy_only=False))
    return np.concatenate(sides), np.concatenate(sizes).astype(np.int64)


def _measured_rows(sides: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The validation rows to measure, in row order: all of them while their text fits
    `VAL_SAMPLE_BYTES`, else those with the smallest row hashes that fit (a uniform sample)."""
    val = np.flatnonzero(sides)
    if sizes[val].sum() <= VAL_SAMPLE_BYTES:
        return val
    order = val[np.argsort(_splitmix(val.astype(np.uint64)), kind="stable")]
    fits = np.cumsum(sizes[order]) <= VAL_SAMPLE_BYTES
    fits[0] = True
    return np.sort(order[fits])


def _read_rows(parts: list[Path], rows: np.ndarray):
    """The texts of `rows` (sorted row numbers across the parts), in batches."""
    offset = 0
    for part in parts:
        parquet = pq.ParquetFile(part, pre_buffer=False)
        for batch in parquet.iter_batches(columns=["text"], batch_size=_TRAIN_BATCH):
            lo, hi = np.searchsorted(rows, [offset, offset + batch.num_rows])
            if hi > lo:
                texts = batch.column(0).to_pylist()
                yield [texts[r - offset] for r in rows[lo:hi].tolist()]
            offset += batch.num_rows


def _distinct(hashes: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, owners) with each (owner, hash) once, sorted by owner then hash."""
    if len(hashes) == 0:
        return hashes, owners
    order = np.lexsort((hashes, owners))
    hashes, owners = hashes[order], owners[order]
    fresh = np.concatenate(([True], (hashes[1:] != hashes[:-1]) | (owners[1:] != owners[:-1])))
    return hashes[fresh], owners[fresh]


class _ValidationIndex:
    """The measured validation documents' grams, and each one's best training containment."""

    def __init__(self, batches, n_docs: int) -> None:
        grams, owners, overlap = [np.zeros(0, np.uint64)], [np.zeros(0, np.int64)], []
        pos = 0
        for texts in batches:
            found = word_ngrams(texts, (GRAM_WORDS, OVERLAP_WORDS))
            hashes, who = _distinct(found[GRAM_WORDS][0], found[GRAM_WORDS][1] + pos)
            grams.append(hashes)
            owners.append(who)
            overlap.append(found[OVERLAP_WORDS][0])
            pos += len(texts)
        gram, owner = np.concatenate(grams), np.concatenate(owners)
        self.denominator = np.bincount(owner, minlength=n_docs)
        self.best = np.zeros(n_docs, np.float64)
        # Each distinct gram's validation documents (its postings), and grams with the same
        # postings gathered into one group.
        order = np.lexsort((owner, gram))
        gram, owner = gram[order], owner[order]
        starts = np.flatnonzero(np.concatenate(([len(gram) > 0], gram[1:] != gram[:-1])))
        self.grams = gram[starts]
        lengths = np.diff(np.append(starts, len(gram)))
        mixed = _splitmix(owner.astype(np.uint64) + np.uint64(1))
        signature = np.add.reduceat(mixed, starts) if len(starts) else mixed[:0]
        signature = _splitmix(signature ^ lengths.astype(np.uint64))
        _, first, self.group_of = np.unique(signature, return_index=True, return_inverse=True)
        self.group_size = lengths[first]
        self.group_start = np.concatenate(([0], np.cumsum(self.group_size)[:-1]))
        self.members = owner[index_ranges(starts[first], self.group_size)]
        counts = np.concatenate(overlap) if overlap else np.zeros(0, np.uint64)
        self.overlap_grams, self.overlap_counts = np.unique(counts, return_counts=True)
        self.overlap_seen = np.zeros(len(self.overlap_grams), dtype=bool)

    def scan_training(self, texts: list[str]) -> None:
        """Raise each validation document's best containment by these training documents, and
        mark the validation 13-grams they hold."""
        found = word_ngrams(texts, (GRAM_WORDS, OVERLAP_WORDS))
        if len(self.overlap_grams):
            overlap = found[OVERLAP_WORDS][0]
            at = np.minimum(
                np.searchsorted(self.overlap_grams, overlap), len(self.overlap_grams) - 1
            )
            self.overlap_seen[at[self.overlap_grams[at] == overlap]] = True
        if len(self.grams) == 0:
            return
        hashes, train_doc = _distinct(*found[GRAM_WORDS])
        at = np.minimum(np.searchsorted(self.grams, hashes), len(self.grams) - 1)
        hit = self.grams[at] == hashes
        # (training document, group) -> how many of the group's grams that document holds.
        code = train_doc[hit] * len(self.group_size) + self.group_of[at[hit]]
        code, shared = np.unique(code, return_counts=True)
        if len(code) == 0:
            return
        doc, group = code // len(self.group_size), code % len(self.group_size)
        # Blocks of whole training documents, each about `_PAIR_BLOCK` (training, validation)
        # pairs, so a footer shared by every document never builds one huge array.
        pairs = self.group_size[group]
        starts = np.flatnonzero(np.concatenate(([True], doc[1:] != doc[:-1])))
        per_doc = np.add.reduceat(pairs, starts)
        block = np.repeat(np.cumsum(per_doc) // _PAIR_BLOCK, np.diff(np.append(starts, len(doc))))
        bounds = np.flatnonzero(np.concatenate(([True], block[1:] != block[:-1], [True])))
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            self._credit(doc[lo:hi], group[lo:hi], shared[lo:hi])

    def _credit(self, doc: np.ndarray, group: np.ndarray, shared: np.ndarray) -> None:
        sizes = self.group_size[group]
        if int(sizes.sum()) == 0:
            return
        val = self.members[index_ranges(self.group_start[group], sizes)]
        code = np.repeat(doc, sizes) * len(self.best) + val
        code, inverse = np.unique(code, return_inverse=True)
        held = np.bincount(inverse, weights=np.repeat(shared, sizes))
        val = code % len(self.best)
        np.maximum.at(self.best, val, held / np.maximum(self.denominator[val], 1))
