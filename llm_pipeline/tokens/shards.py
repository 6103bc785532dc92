"""Token shard files: `train.bin` / `val.bin` (flat arrays of token ids) and `meta.json`.

The layout is nanoGPT's, so a memmap is all a trainer needs: each document's ids followed by the
end-of-text id, uint16 when the vocabulary fits, else uint32. `meta.json` carries what later
stages need and cannot recompute cheaply: token and UTF-8 byte counts per split (bits per byte
needs the bytes), the dtype, and the hash of the tokenizer that produced the ids.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
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
    PrivateDir,
    clear_leftovers,
    disk_full_guard,
    private_dir,
    write_json_atomic,
)
from llm_pipeline.errors import OutputBusyError
from llm_pipeline.locking import output_lock
from llm_pipeline.progress import Progress
from llm_pipeline.safe_open import UnsafeFileError, create_exclusive, open_dir, open_fd, read_bytes

SPLITS = ("train", "val")
META_FILE = "meta.json"
JOURNAL_FILE = ".publish.json"
# The private folder the three files are written in: `.shards.<host>-<pid>.<random>.tmp`.
STAGING = "shards"


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

    All three files are written in a private temporary folder first, through descriptors (so
    nobody who can write into the token folder can swap one for a symlink and have it chmod'ed,
    emptied or published). A failure while encoding, a full
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
        for name in (STAGING, *(f"{split}.bin" for split in SPLITS), META_FILE):
            clear_leftovers(out_dir / name)  # (older versions left files, not a folder)
        with private_dir(out_dir / STAGING) as staging:
            return _write_shards(tokenizer, batches, staging, eot_id, extra_meta, progress)


def _write_shards(
    tokenizer: Tokenizer,
    batches: Iterable[tuple],
    staging: PrivateDir,
    eot_id: int,
    extra_meta: dict | None,
    progress: Progress | None = None,
) -> dict:
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    dtype = shard_dtype(vocab_size)
    counts = {split: SplitCounts() for split in SPLITS}
    started = time.perf_counter()
    fds = {split: create_exclusive(f"{split}.bin", dir_fd=staging.fd) for split in SPLITS}
    with os.fdopen(fds["train"], "wb") as train_fh, os.fdopen(fds["val"], "wb") as val_fh:
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
                    chunk = np.concatenate([flat[s:e] for s, e in zip(starts[mask], ends[mask])])
                handles[split].write(chunk.tobytes())
                counts[split].tokens += len(chunk)
                counts[split].documents += int(mask.sum())
                counts[split].bytes += int(np.asarray(byte_lengths)[mask].sum())
            if progress is not None:
                progress.advance(len(texts), int(np.asarray(byte_lengths).sum()))
    seconds = time.perf_counter() - started
    meta = {
        "dtype": dtype.name,
        "vocab_size": vocab_size,
        "eot_id": eot_id,
        "splits": {split: vars(counts[split]) for split in SPLITS},
        "encode_seconds": round(seconds, 3),
        **(extra_meta or {}),
    }
    _publish(staging, meta)
    return meta


def _shards_lock(out_dir: Path, timeout: float | None = None):
    # The lock file sits next to the folder, not in it: the folder holds only the shards.
    return output_lock(out_dir.parent, f"{out_dir.name}.shards", timeout)


def _publish(staging: PrivateDir, meta: dict) -> None:
    """Rename the finished files into place as one set (see `write_shards`), through the
    descriptors of the private folder and of the token folder."""
    with os.fdopen(create_exclusive(META_FILE, dir_fd=staging.fd), "w") as fh:
        fh.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    names = [*(f"{split}.bin" for split in SPLITS), META_FILE]
    for name in names:
        fd = open_fd(name, dir_fd=staging.fd)
        try:
            os.fchmod(fd, FILE_MODE)
            os.fsync(fd)
        finally:
            os.close(fd)
    out_dir = staging.final.parent
    moves = [[f"{staging.name}/{name}", name] for name in names]
    write_json_atomic(out_dir / JOURNAL_FILE, {"moves": moves})
    finish_publish(out_dir, staging)


def finish_publish(out_dir: Path, staging: PrivateDir | None = None) -> bool:
    """Complete a publish that a killed writer left half done; True if there was one.

    Only the journal's own renames run: a regular file (never a link) in a hidden folder of
    the token folder onto one of the three shard files, so a tampered journal cannot move
    anything else. `staging`: the writer's own folder, used by its descriptor.
    """
    journal = out_dir / JOURNAL_FILE
    if not journal.is_file():
        return False
    try:
        moves = json.loads(read_bytes(journal))["moves"]
    except (OSError, ValueError, KeyError, TypeError):  # UnsafeFileError is a ValueError
        moves = []
    out_fd = open_dir(out_dir, follow=True)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(META_FILE, dir_fd=out_fd)
        for move in moves if isinstance(moves, list) else []:
            if isinstance(move, list) and len(move) == 2 and all(isinstance(m, str) for m in move):
                _journal_move(*move, out_fd, staging)
    finally:
        os.close(out_fd)
    journal.unlink(missing_ok=True)
    return True


def _journal_move(source: str, target: str, out_fd: int, staging: PrivateDir | None) -> None:
    folder, _, name = source.rpartition("/")
    if target not in {f"{split}.bin" for split in SPLITS} | {META_FILE} or "/" in folder:
        return
    if not (folder or name).startswith(".") or (folder and name != target):
        return
    if staging is not None and folder == staging.name:
        source_fd = staging.fd
    elif folder:
        try:
            source_fd = open_dir(folder, dir_fd=out_fd)
        except (UnsafeFileError, OSError):
            return
    else:
        source_fd = out_fd  # a journal of an older version: hidden files beside the shards
    try:
        found = os.stat(name, dir_fd=source_fd, follow_symlinks=False)
        if stat.S_ISREG(found.st_mode):
            os.replace(name, target, src_dir_fd=source_fd, dst_dir_fd=out_fd)
    except FileNotFoundError:
        pass
    finally:
        if source_fd not in (out_fd, getattr(staging, "fd", None)):
            os.close(source_fd)


def read_meta(shard_dir: Path) -> dict:
    """Read `meta.json` of a shard folder (first completing a publish a killed writer left)."""
    if (shard_dir / JOURNAL_FILE).is_file():
        try:
            with _shards_lock(shard_dir, timeout=0):
                finish_publish(shard_dir)
        except (OutputBusyError, OSError):
            pass  # a live writer is publishing and will finish it
    # One no-follow descriptor: a FIFO or a link planted as meta.json is refused at once.
    return json.loads(read_bytes(shard_dir / META_FILE))


def open_split(shard_dir: Path | str, split: str) -> np.memmap:
    """Memory-map one split's ids read-only, with the dtype recorded in `meta.json`."""
    shard_dir = Path(shard_dir)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    meta = read_meta(shard_dir)
    # Mapped from a no-follow descriptor checked to be a regular file (np.memmap would open the
    # name, following a link planted there); the mapping outlives the descriptor.
    with os.fdopen(open_fd(shard_dir / f"{split}.bin"), "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return np.zeros(0, dtype=meta["dtype"])  # memmap cannot map an empty file
        return np.memmap(fh, dtype=meta["dtype"], mode="r")
