#!/usr/bin/env python
"""Benchmark of model quality for a fixed time budget: the default GPT against the GRU.

On the built-in corpus (or `--shards DIR`), each model is trained by the pipeline's own
`train(...)` with `max_seconds` = the budget, and then scored on the *whole* validation split:
summed next-token nats from `sum_nats` (non-overlapping windows of the model's block size, fp32,
as the `trained_model` asset scores) turned into bits per byte with the split's UTF-8 byte count
from `meta.json`. Bits per byte does not depend on how much text a token covers, so it is the
fair number across architectures.

Contenders, with the same training settings (the `trained_model` asset's defaults, read from
`TrainedModelConfig`: today batch 16, peak learning rate 2e-3, warm-up 30 steps, cosine to
10%, dtype auto) and the same budget:

- gpt: the `trained_model` default model, today 4 layers, 4 heads, width 128, block 128;
- gru: `--gru-layers` layers (default 1), width (a multiple of 8) chosen so its parameter count
  is the closest to the GPT's: printed; for today's default and vocab 4096, width 144 and
  1,309,024 parameters against the GPT's 1,311,872. The GRU has a separate input embedding and
  output head, so most of its parameters are those two tables.

The GPT must reach the lower bits per byte. A unigram model fitted on the training split is
printed as the floor any learning must beat. Then the GPT's curve: bits per byte against the
budget (`--curve`), each point its own run from scratch (the learning-rate schedule is sized to
the budget, so a point is not a checkpoint of a longer run).

Time budgets are wall clock: on a shared machine a busy neighbour buys fewer steps. Each run
waits (up to `--max-wait` s) for a quiet machine first, and steps, tokens/s and the CPUs other
processes kept busy during training ("others") are printed next to every result, so a
disturbed run shows. Default runtime: 120 + 120 + 30 + 60 s of training plus imports, waits and
scoring, about 6 minutes.

    .venv/bin/python benchmarks/quality.py [--shards DIR] [--seconds 120] [--curve 30,60,120]
        [--gru-layers 1] [--dtype auto] [--max-wait 60]
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
import os
from dataclasses import dataclass, replace

import torch

# The sibling benchmarks/train.py: where the shards are, and how busy the neighbours are.
from train import OtherLoad, find_shards, wait_for_quiet

from llm_pipeline.assets.model import TrainedModelConfig
from llm_pipeline.lm.evaluate import bits_per_byte, sum_nats, unigram_bits_per_byte
from llm_pipeline.lm.model import ModelConfig, build_model, count_parameters
from llm_pipeline.lm.train import TrainConfig, train
from llm_pipeline.tokens.shards import open_split, read_meta


def pipeline_defaults(vocab_size: int) -> tuple[ModelConfig, TrainConfig]:
    """The `trained_model` asset's default model and training configs for `vocab_size`."""
    defaults = TrainedModelConfig()
    return defaults.to_model_config(vocab_size), defaults.to_train_config()


@dataclass
class Scored:
    """One training run and its validation score."""

    label: str
    model_config: ModelConfig
    train_config: TrainConfig
    parameters: int
    steps: int
    tokens: int
    seconds: float
    dtype: str
    val_bpb: float
    others: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def train_and_score(
    label: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    shards: Path,
    max_wait: float = 60.0,
) -> Scored:
    """Train with the pipeline's loop, then bits per byte over the whole validation split.

    Waits (up to `max_wait` s) for a quiet machine first, and records how many CPUs other
    processes kept busy during training.
    """
    wait_for_quiet(max_wait)
    with OtherLoad() as load:
        result = train(model_config, train_config, shards)
    if result.stop_reason == "diverged":
        val_bpb = float("nan")
    else:
        device = next(result.model.parameters()).device
        nats, _ = sum_nats(
            result.model, open_split(shards, "val"), model_config.block_size, device=device
        )
        val_bpb = bits_per_byte(nats, read_meta(shards)["splits"]["val"]["bytes"])
    return Scored(
        label=label,
        model_config=model_config,
        train_config=train_config,
        parameters=count_parameters(result.model),
        steps=result.steps,
        tokens=result.tokens_seen,
        seconds=result.seconds,
        dtype=result.dtype,
        val_bpb=val_bpb,
        others=load.cpus,
    )


def matched_gru(gpt: ModelConfig, n_layer: int) -> ModelConfig:
    """A GRU of `n_layer` layers whose width (a multiple of 8) best matches the GPT's size."""
    target = count_parameters(build_model(gpt))

    def size(width: int) -> int:
        config = replace(gpt, architecture="gru", n_layer=n_layer, n_embd=width)
        return count_parameters(build_model(config))

    width = min(range(8, 4 * gpt.n_embd + 1, 8), key=lambda w: abs(size(w) - target))
    return replace(gpt, architecture="gru", n_layer=n_layer, n_embd=width)


def describe(config: ModelConfig) -> str:
    heads = f" n_head={config.n_head}" if config.architecture == "gpt" else ""
    return (
        f"{config.architecture} n_layer={config.n_layer}{heads} n_embd={config.n_embd} "
        f"block={config.block_size}"
    )


HEADER = (
    f"{'run':<10}{'params':>10}{'budget s':>9}{'steps':>7}{'tokens':>10}{'tok/s':>8}"
    f"{'dtype':>9}{'others':>8}{'val bpb':>9}"
)


def row(scored: Scored) -> str:
    return (
        f"{scored.label:<10}{scored.parameters:>10,}{scored.train_config.max_seconds:>9.0f}"
        f"{scored.steps:>7}{scored.tokens:>10,}{scored.tokens_per_s:>8,.0f}"
        f"{scored.dtype:>9}{scored.others:>8.2f}{scored.val_bpb:>9.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", help="token shard folder (default: the built-in corpus's)")
    parser.add_argument("--seconds", type=float, default=120.0, help="training budget per model")
    parser.add_argument(
        "--curve", default="30,60,120", help="comma-separated GPT budgets in seconds ('' = none)"
    )
    parser.add_argument("--gru-layers", type=int, default=1, choices=(1, 2))
    parser.add_argument(
        "--dtype", choices=("auto", "bf16", "fp32"), help="default: the trained_model default"
    )
    parser.add_argument(
        "--max-wait", type=float, default=60.0, help="seconds to wait for a quiet machine per run"
    )
    args = parser.parse_args()

    shards = find_shards(args.shards)
    meta = read_meta(shards)
    gpt, defaults = pipeline_defaults(meta["vocab_size"])
    gru = matched_gru(gpt, args.gru_layers)
    base = replace(defaults, max_steps=0, max_tokens=0, max_seconds=args.seconds)
    base = replace(base, dtype=args.dtype or base.dtype)
    val_tokens, val_bytes = meta["splits"]["val"]["tokens"], meta["splits"]["val"]["bytes"]
    unigram = unigram_bits_per_byte(
        open_split(shards, "train"), open_split(shards, "val"), meta["vocab_size"], val_bytes
    )
    print(
        f"\nquality benchmark on {shards}: train {meta['splits']['train']['tokens']:,} tokens, "
        f"val {val_tokens:,} tokens / {val_bytes:,} bytes; {torch.get_num_threads()} threads "
        f"on {os.cpu_count()} CPUs"
    )
    print(f"  gpt: {describe(gpt)}")
    print(f"  gru: {describe(gru)} (width matched to the GPT's parameter count)")
    print(
        f"  both: batch {base.batch_size}, lr {base.learning_rate:g}, warm-up "
        f"{base.warmup_steps}, dtype {base.dtype}; unigram floor {unigram:.4f} bits/byte\n"
    )
    print(HEADER)
    results: dict[str, Scored] = {}
    for label, config in (("gpt", gpt), ("gru", gru)):
        results[label] = train_and_score(label, config, base, shards, args.max_wait)
        print(row(results[label]), flush=True)

    curve = [results["gpt"]]
    budgets = sorted({float(b) for b in args.curve.split(",") if b.strip()})
    for budget in budgets:
        if budget != args.seconds:
            scored = train_and_score(
                "gpt", gpt, replace(base, max_seconds=budget), shards, args.max_wait
            )
            print(row(scored), flush=True)
            curve.append(scored)

    gpt_bpb, gru_bpb = results["gpt"].val_bpb, results["gru"].val_bpb
    print(f"\nat {args.seconds:g} s of training (same run, one after the other)")
    print(f"  gpt {gpt_bpb:.4f} bits/byte, gru {gru_bpb:.4f} bits/byte, unigram {unigram:.4f}")
    print(f"  gpt - gru = {gpt_bpb - gru_bpb:+.4f} bits/byte ({gpt_bpb / gru_bpb:.3f}×)")
    print(f"  GPT wins: {'yes' if gpt_bpb < gru_bpb else 'NO'}")
    if budgets:
        print("\ngpt bits/byte against training budget")
        for scored in sorted(curve, key=lambda s: s.train_config.max_seconds):
            if scored.train_config.max_seconds in budgets:
                print(
                    f"  {scored.train_config.max_seconds:>6.0f} s  {scored.steps:>6} steps  "
                    f"{scored.tokens:>10,} tokens  {scored.val_bpb:.4f}"
                )


if __name__ == "__main__":
    main()
