"""Token shard files: `train.bin` / `val.bin` (flat arrays of token ids) and `meta.json`.

The layout is nanoGPT's, so a memmap is all a trainer needs: each document's ids followed by the
end-of-text id, uint16 when the vocabulary fits, else uint32. `meta.json` carries what later
stages need and cannot recompute cheaply: token and UTF-8 byte counts per split (bits per byte
needs the bytes), the dtype, and the hash of the tokenizer that produced the ids.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from llm_pipeline.atomic import (
    FILE_MODE,
    disk_full_guard,
    leftovers,
    temp_file_for,
    write_json_atomic,
)
from llm_pipeline.errors import OutputBusyError
from llm_pipeline.locking import output_lock
from llm_pipeline.progress import Progress

SPLITS = ("train", "val")
META_FILE = "meta.json"
JOURNAL_FILE = ".publish.json"


def shard_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32: half the disk and memory bandwidth when it can."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


@dataclass
class SplitCounts:
    """Running totals for one split."""

    tokens: int = 0
    documents: int = 0
    bytes: int = 0


def iter_split_batches(
    files: Iterable[Path], batch_size: int = 1024, side: str | None = None
) -> Iterator[tuple]:
    """Yield (texts, utf8_byte_lengths, is_val) batches from cleaned Parquet files, following
    their `split` column (decided once by `cleaned_corpus`); `side` keeps only one side's rows.
    """
    for path in files:
        parquet = pq.ParquetFile(path, pre_buffer=False)
        if "split" not in parquet.schema_arrow.names:
            raise ValueError(
                f"{path}: no 'split' column: the cleaned corpus predates the split decided in "
                "cleaned_corpus; materialize cleaned_corpus again"
            )
        for batch in parquet.iter_batches(columns=["text", "split"], batch_size=batch_size):
            is_val = batch.column(1).to_numpy(zero_copy_only=False) == "val"
            text = batch.column(0)
            if side is not None:
                keep = is_val if side == "val" else ~is_val
                text, is_val = text.filter(keep), is_val[keep]
            yield (
                text.to_pylist(),
                pc.binary_length(text).to_numpy(zero_copy_only=False),
                is_val,
            )


def _prefetch(iterator: Iterator, depth: int = 2) -> Iterator:
    """Read the next batches on a thread while the caller encodes (tokenizers drops the GIL)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        lock = threading.Lock()

        def next_item():
            with lock:
                return next(iterator, StopIteration)

        futures = [pool.submit(next_item) for _ in range(depth)]
        while True:
            item = futures.pop(0).result()
            if item is StopIteration:
                return
            futures.append(pool.submit(next_item))
            yield item


def encode_ids(tokenizer: Tokenizer, texts: list[str], eot_id: int, dtype: np.dtype) -> tuple:
    """Encode texts in parallel; return (flat ids with end-of-text after each doc, doc lengths)."""
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    encodings = encode(texts, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) + 1 for e in encodings), dtype=np.int64, count=len(texts))
    flat = np.empty(int(lengths.sum()), dtype=dtype)
    position = 0
    for encoding, length in zip(encodings, lengths.tolist()):
        flat[position : position + length - 1] = encoding.ids
        flat[position + length - 1] = eot_id
        position += length
    return flat, lengths


def write_shards(
    tokenizer: Tokenizer,
    batches: Iterable[tuple],
    out_dir: Path,
    eot_id: int,
    extra_meta: dict | None = None,
    progress: Progress | None = None,
) -> dict:
    """Encode (texts, byte_lengths, is_val) batches (`iter_split_batches`) into `train.bin` /
    `val.bin` + `meta.json`.

    All three files are written under temporary names first. A failure while encoding, a full
    disk (`DiskFullError`) or a kill while encoding leaves the previous set byte-identical. Then
    they are published as a set: a journal naming the three renames is written, the old
    `meta.json` is removed (a reader finds no shards, never ids that meta.json does not
    describe), the renames run and the journal is deleted. A kill in between is completed by the
    next reader (`read_meta`) or writer, so the result is the new complete set. Writers of one
    folder are serialised by a lock: a second run waits.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with _shards_lock(out_dir), disk_full_guard(out_dir):
        finish_publish(out_dir)
        for split in (*SPLITS, "meta"):
            for stale in leftovers(out_dir / (META_FILE if split == "meta" else f"{split}.bin")):
                stale.unlink(missing_ok=True)
        return _write_shards(tokenizer, batches, out_dir, eot_id, extra_meta, progress)


def _write_shards(
    tokenizer: Tokenizer,
    batches: Iterable[tuple],
    out_dir: Path,
    eot_id: int,
    extra_meta: dict | None,
    progress: Progress | None = None,
) -> dict:
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    dtype = shard_dtype(vocab_size)
    counts = {split: SplitCounts() for split in SPLITS}
    started = time.perf_counter()
    tmp = {split: temp_file_for(out_dir / f"{split}.bin") for split in SPLITS}
    try:
        with open(tmp["train"], "wb") as train_fh, open(tmp["val"], "wb") as val_fh:
            handles = {"train": train_fh, "val": val_fh}
            for texts, byte_lengths, is_val in _prefetch(iter(batches)):
                if not texts:
                    continue
                flat, lengths = encode_ids(tokenizer, texts, eot_id, dtype)
                is_val = np.asarray(is_val, dtype=bool)
                ends = np.cumsum(lengths)
                starts = ends - lengths
                for split, mask in (("train", ~is_val), ("val", is_val)):
                    if not mask.any():
                        continue
                    if mask.all():
                        chunk = flat
                    else:
                        chunk = np.concatenate(
                            [flat[s:e] for s, e in zip(starts[mask], ends[mask])]
                        )
                    handles[split].write(chunk.tobytes())
                    counts[split].tokens += len(chunk)
                    counts[split].documents += int(mask.sum())
                    counts[split].bytes += int(np.asarray(byte_lengths)[mask].sum())
                if progress is not None:
                    progress.advance(len(texts), int(np.asarray(byte_lengths).sum()))
    except BaseException:
        for path in tmp.values():
            path.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - started
    meta = {
        "dtype": dtype.name,
        "vocab_size": vocab_size,
        "eot_id": eot_id,
        "splits": {split: vars(counts[split]) for split in SPLITS},
        "encode_seconds": round(seconds, 3),
        **(extra_meta or {}),
    }
    _publish(out_dir, tmp, meta)
    return meta


def _shards_lock(out_dir: Path, timeout: float | None = None):
    # The lock file sits next to the folder, not in it: the folder holds only the shards.
    return output_lock(out_dir.parent, f"{out_dir.name}.shards", timeout)


def _publish(out_dir: Path, tmp: dict[str, Path], meta: dict) -> None:
    """Rename the finished temporary files into place as one set (see `write_shards`)."""
    meta_tmp = temp_file_for(out_dir / META_FILE)
    staged = [*tmp.values(), meta_tmp]
    try:
        meta_tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        for path in staged:
            os.chmod(path, FILE_MODE)
            with open(path, "rb+") as fh:
                os.fsync(fh.fileno())
        moves = [[tmp[split].name, f"{split}.bin"] for split in SPLITS]
        moves.append([meta_tmp.name, META_FILE])
        write_json_atomic(out_dir / JOURNAL_FILE, {"moves": moves})
    except BaseException:
        for path in staged:
            path.unlink(missing_ok=True)
        raise
    finish_publish(out_dir)


def finish_publish(out_dir: Path) -> bool:
    """Complete a publish that a killed writer left half done; True if there was one.

    Only the journal's own renames run: a temporary name (hidden) onto one of the three shard
    files, so a tampered journal cannot move anything else.
    """
    journal = out_dir / JOURNAL_FILE
    if not journal.is_file():
        return False
    try:
        moves = json.loads(journal.read_text())["moves"]
    except (OSError, ValueError, KeyError, TypeError):
        moves = []
    (out_dir / META_FILE).unlink(missing_ok=True)
    allowed = {f"{split}.bin" for split in SPLITS} | {META_FILE}
    for source, target in moves:
        if "/" in source or not source.startswith(".") or target not in allowed:
            continue
        if (out_dir / source).exists():
            os.replace(out_dir / source, out_dir / target)
    journal.unlink(missing_ok=True)
    return True


def read_meta(shard_dir: Path) -> dict:
    """Read `meta.json` of a shard folder (first completing a publish a killed writer left)."""
    if (shard_dir / JOURNAL_FILE).is_file():
        try:
            with _shards_lock(shard_dir, timeout=0):
                finish_publish(shard_dir)
        except (OutputBusyError, OSError):
            pass  # a live writer is publishing and will finish it
    return json.loads((shard_dir / META_FILE).read_text())


def open_split(shard_dir: Path | str, split: str) -> np.memmap:
    """Memory-map one split's ids read-only, with the dtype recorded in `meta.json`."""
    shard_dir = Path(shard_dir)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    meta = read_meta(shard_dir)
    path = shard_dir / f"{split}.bin"
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=meta["dtype"])  # memmap cannot map an empty file
    return np.memmap(path, dtype=meta["dtype"], mode="r")
