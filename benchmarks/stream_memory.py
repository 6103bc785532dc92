#!/usr/bin/env python
"""How much memory the reader needs for a file with no newline, as the file doubles.

A user's "corpus" is sometimes one huge line (a minified dump, a log without line breaks). The
reader must stream it: this reads a S MB and a 2S MB file of words with no newline, as `.txt`
(cut into `max_doc_chars` chunks) and as `.jsonl` (the one line is skipped by name), and prints
the peak Python memory (tracemalloc) and throughput of each, measured side by side in one run.

- peak / file size ≪ 1 means the file is never held whole;
- peak 2S / peak S ≈ 1 means memory does not grow with the file.

    .venv/bin/python benchmarks/stream_memory.py [--mb 200] [--max-doc-chars 20000]
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import os
import tempfile
import time
import tracemalloc

from llm_pipeline.text.read import readers
from llm_pipeline.text.read.readers import ReadStats, iter_documents


def make_file(folder: Path, mb: int) -> None:
    block = (b"word " * ((1 << 20) // 5 + 1))[: 1 << 20]
    with open(folder / "huge.txt", "wb") as fh:
        for _ in range(mb):
            fh.write(block)
    os.link(folder / "huge.txt", folder / "huge.jsonl")


def measure(mb: int, max_doc_chars: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_file(folder, mb)
        stats = ReadStats()
        tracemalloc.start()
        started = time.perf_counter()
        chunks = sum(1 for _ in iter_documents(folder, stats=stats, max_doc_chars=max_doc_chars))
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {"mb": mb, "chunks": chunks, "peak_mib": peak / 2**20, "mb_per_s": 2 * mb / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--max-doc-chars", type=int, default=20_000)
    args = parser.parse_args()
    readers.MAX_LINE_BYTES = 8 << 20
    small, large = measure(args.mb, args.max_doc_chars), measure(2 * args.mb, args.max_doc_chars)
    for row in (small, large):
        print(
            f"{row['mb']:>5} MB, no newline: {row['chunks']} chunks, peak {row['peak_mib']:.1f} "
            f"MiB ({row['peak_mib'] / row['mb']:.3f} of the file), {row['mb_per_s']:.0f} MB/s"
        )
    print(f"peak 2S / S = {large['peak_mib'] / small['peak_mib']:.2f} (1.00 = flat)")


if __name__ == "__main__":
    main()
