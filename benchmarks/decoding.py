#!/usr/bin/env python
"""Benchmark of the UTF-8 repair decoder (`text/decoding.CountingUtf8Decoder`) on invalid bytes.

Why: a file of invalid bytes is what an attacker (or a broken download) hands the `raw_corpus`
reader, and a 1 KB `.txt.gz` expands to megabytes of 0xFF under the decompression-ratio floor.
The decoder used to restart a strict decoder on the rest of its 1 MiB block after every bad byte,
so its cost grew with the square of the run of invalid bytes (1 MB of 0xFF: 108 s). It must be
linear: the bytes per second it decodes stay flat from 64 KB to 4 MB.

Measured in one run, side by side, in the reader's 1 MiB blocks:
all-invalid input (0xFF), mixed input (one invalid byte in every 16) and valid non-ASCII text,
each size `--repeat` times with the best kept. Printed: MB/s per size and its ratio to the 64 KB
figure (≈ 1.0 everywhere: linear; a quadratic decoder halves it at every doubling).

    .venv/bin/python benchmarks/decoding.py [--repeat 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/tokenize.py would shadow the standard library's `tokenize`: this folder goes last.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import time  # noqa: E402

from llm_pipeline.text.read.decoding import CountingUtf8Decoder  # noqa: E402

BLOCK = 1 << 20  # the reader's block size (text/read/decoding.py)

SIZES = [64 << 10, 256 << 10, 1 << 20, 4 << 20]
INPUTS = {
    "invalid (0xFF)": lambda n: b"\xff" * n,
    "1 bad byte in 16": lambda n: (b"abcdefghijklmn\xc3\xa9"[:15] + b"\xff") * (n // 16),
    "valid non-ASCII": lambda n: ("caf\u00e9 \u20ac " * (n // 11 + 1)).encode()[:n],
}


def decode_seconds(data: bytes, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        decoder = CountingUtf8Decoder()
        started = time.perf_counter()
        for start in range(0, len(data), BLOCK):
            decoder.decode(data[start : start + BLOCK])
        decoder.decode(b"", final=True)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    decode_seconds(b"\xff" * SIZES[0], 1)  # warm-up: the first call pays for imports and caches
    print(f"{'input':<18} {'size':>8} {'MB/s':>8} {'÷ 64 KB':>8}")
    for name, make in INPUTS.items():
        first = None
        for size in SIZES:
            rate = size / decode_seconds(make(size), args.repeat) / 1e6
            first = first or rate
            print(f"{name:<18} {size >> 10:>6}KB {rate:>8.2f} {rate / first:>8.2f}")


if __name__ == "__main__":
    main()
