#!/usr/bin/env python
"""Tuning aid: val bits per byte of candidate `trained_model` configs for one time budget.

Each candidate is a set of overrides of the `trained_model` defaults (the fields of `ModelConfig`
and `TrainConfig`: `n_embd=192,n_head=4`, `learning_rate=3e-3`, `dtype=fp32`, ...), trained by
the pipeline's own `train(...)` for `--seconds` of wall clock and scored on the whole validation
split in bits per byte, as `benchmarks/quality.py` does. The candidates run one after the other,
each after waiting for a quiet machine, and the table is printed best first.

Why: the right model for a fixed budget depends on the machine, because a bigger model learns
more per token but sees fewer tokens. `make run` trains for 300 s; short budgets favour small
models, so confirm a short-budget winner at the real budget before changing a default.

Noise: a time budget turns every change in speed into a change in quality. On the shared 2-core
machine, tokens/s moved by up to 20% between runs that no other process disturbed (the host's
noise, invisible from inside), and the same config scored 1.987 and 2.063 bits/byte in two
90 s runs. List a candidate twice to see the spread; trust only differences well above it.

    .venv/bin/python benchmarks/tune.py [--shards DIR] [--seconds 90] [candidate ...]
    .venv/bin/python benchmarks/tune.py --seconds 300 "" "n_embd=192" "dtype=fp32"
"""

# The import path must be fixed before anything imports the standard library's `tokenize`:
# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# The sibling benchmark tokenize.py would shadow the standard library's `tokenize` (imported by
# linecache, inspect, numpy, ...), because Python puts the script's folder first on sys.path.
# Move the folder to the end: the standard library wins.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse

# The sibling benchmarks: training and scoring, where the shards are.
from quality import HEADER, Scored, row, train_and_score
from train import find_shards

from llm_pipeline.lm.settings import ModelConfig, TrainConfig, TrainedModelSettings
from llm_pipeline.tokens.shards import read_meta

DEFAULT_CANDIDATES = (
    "",
    "dtype=fp32",
    "learning_rate=3e-3",
    "learning_rate=1e-3",
    "batch_size=32",
    "block_size=64",
    "block_size=256",
    "n_layer=2",
    "n_layer=6",
    "n_embd=192",
    "n_embd=256",
)


def parse_overrides(spec: str) -> dict[str, object]:
    """`key=value,key=value` → {key: value}, each value of its config field's type."""
    types = {name: type(f.default) for name, f in TrainedModelSettings.model_fields.items()}
    overrides: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            raise SystemExit(f"bad override {item!r}: use key=value with a config field name")
        kind = types[key]
        overrides[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return overrides


def candidate_configs(
    spec: str, vocab_size: int, seconds: float
) -> tuple[ModelConfig, TrainConfig]:
    """The `trained_model` defaults with `spec`'s overrides and a budget of `seconds`."""
    budget = {"max_steps": 0, "max_tokens": 0, "max_seconds": seconds}
    given = {**parse_overrides(spec), **budget, "vocab_size": vocab_size}
    settings = TrainedModelSettings.resolve(given)  # a bad candidate is refused here
    return settings, settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("candidates", nargs="*", help="override sets ('' = the defaults)")
    parser.add_argument("--shards", help="token shard folder (default: the built-in corpus's)")
    parser.add_argument("--seconds", type=float, default=90.0, help="training budget per run")
    parser.add_argument(
        "--max-wait", type=float, default=60.0, help="seconds to wait for a quiet machine per run"
    )
    args = parser.parse_args()

    shards = find_shards(args.shards)
    vocab_size = read_meta(shards)["vocab_size"]
    specs = args.candidates or list(DEFAULT_CANDIDATES)
    configs = [(spec, *candidate_configs(spec, vocab_size, args.seconds)) for spec in specs]
    print(f"\n{len(specs)} candidates, {args.seconds:g} s each, on {shards}\n")
    print(f"{HEADER}  candidate")
    results: list[tuple[str, Scored]] = []
    for spec, model, training in configs:
        scored = train_and_score(model.architecture, model, training, shards, args.max_wait)
        results.append((spec, scored))
        print(f"{row(scored)}  {spec or 'defaults'}", flush=True)

    print("\nbest first")
    for spec, scored in sorted(results, key=lambda r: r[1].val_bpb):
        print(f"{row(scored)}  {spec or 'defaults'}")


if __name__ == "__main__":
    main()
