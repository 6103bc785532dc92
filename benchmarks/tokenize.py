#!/usr/bin/env python
"""Benchmark of the token_shards encoding path against raw HF `tokenizers` batch encoding.

Measures, in one run on the same cleaned corpus (synthetic, see `synthetic_corpus.py`, put
through the real `clean_documents`) and the same byte-level BPE (vocab 4096, `train_bpe`):

(a) ours: `write_shards(tokenizer, iter_split_batches(files, batch_size=1024), out, ...)` —
    Parquet read (prefetched on a thread), parallel encode, ids copied into flat arrays with
    end-of-text separators, train/val split, `train.bin` / `val.bin` written and fsynced;
(b) raw: the same texts, read into memory beforehand (outside the timing), encoded with
    `tokenizer.encode_batch(batch, add_special_tokens=False)` in batches of 1024 — the speed of
    the library itself, with nothing read and nothing written.

Why: encoding is the one step of the data stages whose cost grows with the corpus and that the
library already parallelises; everything around it (reading, copying ids out, splitting,
writing) should cost little. ours ÷ raw ≥ 0.9 says the path adds at most ~10%. Each variant runs
`--repeat` times, alternating, and the best time of each is kept, so a noisy machine disturbs the
ratio as little as possible. When the tokenizers version has `encode_batch_fast` (no character
offsets), write_shards uses it, so its time is shown too, as a second baseline: raw-fast is what
the same path could reach if reading, copying and writing were free.

    .venv/bin/python benchmarks/tokenize.py [--mb 50] [--train-mb 4] [--repeat 3]
"""

# The import path must be fixed before anything imports the standard library's `tokenize`:
# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# This file is called tokenize.py, and Python puts the script's folder first on sys.path, which
# would shadow the standard library's `tokenize` (imported by linecache, inspect, ...). Move the
# folder to the end: the standard library wins, and `synthetic_corpus` is still found.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import json
import os
import shutil
import time

import tokenizers
from synthetic_corpus import WORK_DIR, ensure_documents

from llm_pipeline.text.clean import CleaningConfig, clean_documents, iter_document_batches
from llm_pipeline.text.store import parquet_parts
from llm_pipeline.tokens.bpe import end_of_text_id, train_bpe
from llm_pipeline.tokens.shards import (
    iter_split_batches,
    write_shards,
)

GOAL_RATIO = 0.9
BATCH_SIZE = 1024
VOCAB_SIZE = 4096
# The token_shards asset's defaults.


# Part of the cache's name: bump it when cleaning's output changes (v2: the `split` column).
CLEANED_CACHE_VERSION = 2


def ensure_cleaned(mb: float, seed: int) -> Path:
    """A cleaned corpus of about `mb` MB (generated, then put through clean_documents), cached."""
    folder = WORK_DIR / f"cleaned-{mb:g}mb-seed{seed}-v{CLEANED_CACHE_VERSION}"
    if (folder / "done.json").is_file():
        print(f"reusing {folder.relative_to(WORK_DIR.parent)}")
        return folder
    # Cleaning drops about a tenth of the synthetic documents (junk and duplicates).
    docs, _ = ensure_documents(round(mb * 1.1, 1), seed)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    workers = min(2, os.cpu_count() or 1)
    stats = clean_documents(
        iter_document_batches(parquet_parts(docs)), folder, CleaningConfig(), workers=workers
    )
    (folder / "done.json").write_text(json.dumps(stats.to_dict()))
    print(
        f"cleaned {stats.bytes_in / 1e6:.1f} MB -> {stats.bytes_out / 1e6:.1f} MB "
        f"({stats.docs_out} docs) in {stats.seconds:.1f}s"
    )
    return folder


def first_megabytes(files: list[Path], mb: float):
    """Training-side text from the start of the corpus, up to about `mb` MB (the BPE training
    set: the tokenizer asset trains on `train` rows only)."""
    remaining = mb * 1e6
    for texts, byte_lengths, _ in iter_split_batches(files, batch_size=BATCH_SIZE, side="train"):
        if remaining <= 0:
            return
        yield texts
        remaining -= int(byte_lengths.sum())


def time_ours(tokenizer, files: list[Path], out_dir: Path, eot_id: int) -> tuple:
    shutil.rmtree(out_dir, ignore_errors=True)
    started = time.perf_counter()
    # the split follows the cleaned table's `split` column (decided in cleaning)
    meta = write_shards(
        tokenizer, iter_split_batches(files, batch_size=BATCH_SIZE), out_dir, eot_id
    )
    seconds = time.perf_counter() - started
    shutil.rmtree(out_dir)
    return seconds, meta


def time_raw(encode, batches: list[list[str]]) -> tuple[float, int]:
    started = time.perf_counter()
    tokens = 0
    for texts in batches:
        # len() of an Encoding is cheap (no id list is built); it checks both paths agree.
        tokens += sum(map(len, encode(texts, add_special_tokens=False)))
    return time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=50.0, help="size of the cleaned corpus")
    parser.add_argument("--train-mb", type=float, default=4.0, help="text the BPE is trained on")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each variant")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic corpus")
    args = parser.parse_args()

    files = parquet_parts(ensure_cleaned(args.mb, args.seed))
    started = time.perf_counter()
    tokenizer = train_bpe(first_megabytes(files, args.train_mb), VOCAB_SIZE)
    print(
        f"trained BPE (vocab {VOCAB_SIZE}) on ~{args.train_mb:g} MB in "
        f"{time.perf_counter() - started:.1f}s"
    )
    eot_id = end_of_text_id(tokenizer)

    # The raw baseline's input, read before any timing starts.
    batches: list[list[str]] = []
    n_bytes = 0
    for texts, byte_lengths, _ in iter_split_batches(files, batch_size=BATCH_SIZE):
        batches.append(texts)
        n_bytes += int(byte_lengths.sum())
    n_docs = sum(map(len, batches))
    mb = n_bytes / 1e6

    fast = getattr(tokenizer, "encode_batch_fast", None)
    used = "encode_batch_fast" if fast is not None else "encode_batch"
    print(
        f"\ntokenize benchmark: {mb:.1f} MB, {n_docs} docs, {len(files)} part(s), batches of "
        f"{BATCH_SIZE}, {os.cpu_count()} CPUs, tokenizers {tokenizers.__version__}, "
        f"repeat {args.repeat}"
    )
    print(f"write_shards encodes with: tokenizer.{used}")

    variants = {"ours (write_shards)": [], "raw encode_batch": []}
    if fast is not None:
        variants["raw encode_batch_fast"] = []
    out_dir = WORK_DIR / f"shards-{os.getpid()}"
    tokens: dict[str, int] = {}
    print(f"\n{'run':<4}{'variant':<24}{'s':>8}{'MB/s':>8}")
    for rep in range(1, args.repeat + 1):
        for name in variants:
            if name.startswith("ours"):
                seconds, meta = time_ours(tokenizer, files, out_dir, eot_id)
                # Each document's ids are followed by one end-of-text id.
                count = sum(meta["splits"][s]["tokens"] for s in ("train", "val")) - n_docs
            elif name == "raw encode_batch":
                seconds, count = time_raw(tokenizer.encode_batch, batches)
            else:
                seconds, count = time_raw(fast, batches)
            if tokens.setdefault(name, count) != count:
                raise SystemExit(f"{name}: {count} tokens this time, {tokens[name]} before")
            variants[name].append(seconds)
            print(f"{rep:<4}{name:<24}{seconds:>8.2f}{mb / seconds:>8.2f}", flush=True)

    if len(set(tokens.values())) != 1:
        raise SystemExit(f"the variants disagree on the token count: {tokens}")
    best = {name: min(times) for name, times in variants.items()}
    print(
        f"\nbest of {args.repeat} ({tokens['raw encode_batch']} tokens, "
        f"{n_bytes / tokens['raw encode_batch']:.2f} bytes/token)"
    )
    for name, seconds in best.items():
        print(f"  {name:<24}{seconds:>8.2f} s {mb / seconds:>8.2f} MB/s")
    ratio = best["raw encode_batch"] / best["ours (write_shards)"]
    print("\nratio (measured side by side in this run)")
    print(f"  ours ÷ raw encode_batch        {ratio:6.2f}")
    if fast is not None:
        fast_ratio = best["raw encode_batch_fast"] / best["ours (write_shards)"]
        print(f"  ours ÷ raw encode_batch_fast   {fast_ratio:6.2f}   (same encode call as ours)")
    print("\ngoal")
    verdict = "met" if ratio >= GOAL_RATIO else "MISSED"
    print(f"  ours ÷ raw ≥ {GOAL_RATIO:g}                 {ratio:6.2f}   {verdict}")


if __name__ == "__main__":
    main()
