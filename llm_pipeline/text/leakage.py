"""How much of the validation text a training document already holds, in bounded memory.

The figure the blocking leakage check guards: the share of validation bytes in documents with
at least `LEAK_CONTAINMENT` of their word 8-grams inside ONE training document. It is measured
on the cleaned table as written (its `split` column), independently of how the split was made,
so a hand-made or corrupted split is judged the same way. The 8-grams are the sampled ones of
`split.sampled_grams` (one in `GRAM_SAMPLE`, the same grams in every document), spilled to disk
by hash range; only validation-training pairs are counted.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llm_pipeline.text.dedup import KeySpill
from llm_pipeline.text.split import (
    GRAM_SAMPLE,
    GRAM_WORDS,
    MAX_GRAM_DOCS,
    VAL,
    gram_pair_counts,
    sampled_grams,
)

LEAK_CONTAINMENT = 0.5
MAX_LEAKED_SHARE = 0.01  # the check's bound: at most 1% of validation bytes
# What a recorded figure was measured by: a figure under another rule is measured again.
LEAKAGE_RULE = (
    f"v1: share of val bytes with >={LEAK_CONTAINMENT} of sampled word {GRAM_WORDS}-grams "
    f"(1 in {GRAM_SAMPLE}, at most {MAX_GRAM_DOCS} documents a gram) in one training document"
)


@dataclass
class Leakage:
    """Validation documents and bytes, and those found (mostly) inside one training document."""

    val_docs: int = 0
    val_bytes: int = 0
    leaked_docs: int = 0
    leaked_bytes: int = 0
    contained_docs: int = 0  # every sampled 8-gram inside one training document

    @property
    def share(self) -> float:
        return self.leaked_bytes / self.val_bytes if self.val_bytes else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "share": round(self.share, 6)}


def measure_leakage(parts: list[Path], scratch_parent: Path | None = None) -> Leakage:
    """The leakage of the split written in `parts` (cleaned Parquet with `text`, `split`)."""
    scratch = Path(tempfile.mkdtemp(prefix=".leakage-", dir=scratch_parent))
    try:
        return _measure(parts, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _measure(parts: list[Path], scratch: Path) -> Leakage:
    spill = KeySpill(scratch / "grams")
    is_val: list[np.ndarray] = []
    n_bytes: list[np.ndarray] = []
    sampled: list[np.ndarray] = []
    pos = 0
    for part in parts:
        parquet = pq.ParquetFile(part, pre_buffer=False)
        if "split" not in parquet.schema_arrow.names:
            raise ValueError(f"{part}: no 'split' column (written before the split moved here)")
        for batch in parquet.iter_batches(columns=["text", "split"], batch_size=8192):
            texts = batch.column(0).to_pylist()
            hashes, owners = sampled_grams(texts)
            spill.add(hashes, (owners + pos).astype(np.uint32))
            sampled.append(np.bincount(owners, minlength=len(texts)))
            is_val.append(batch.column(1).to_numpy(zero_copy_only=False) == VAL)
            n_bytes.append(pc.binary_length(batch.column(0)).to_numpy(zero_copy_only=False))
            pos += len(texts)
    val = np.concatenate(is_val) if is_val else np.zeros(0, bool)
    size = np.concatenate(n_bytes).astype(np.int64) if n_bytes else np.zeros(0, np.int64)
    grams = np.concatenate(sampled) if sampled else np.zeros(0, np.int64)
    best = np.zeros(len(val), np.float64)  # per validation document: its best training match

    def mixed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return val[a.astype(np.int64)] != val[b.astype(np.int64)]

    for a, b, count in gram_pair_counts(spill, scratch / "pairs", allowed=mixed):
        v = np.where(val[a], a, b)
        np.maximum.at(best, v, count / np.maximum(grams[v], 1))
    leaked = val & (best >= LEAK_CONTAINMENT)
    return Leakage(
        val_docs=int(val.sum()),
        val_bytes=int(size[val].sum()),
        leaked_docs=int(leaked.sum()),
        leaked_bytes=int(size[leaked].sum()),
        contained_docs=int((val & (best >= 1.0)).sum()),
    )
