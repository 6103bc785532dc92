#!/usr/bin/env python
"""Benchmark of generation: tokens/s with the KV cache against re-running the context each step.

One randomly initialised GPT of the `trained_model` asset's shape (or `--n-layer`/`--n-embd`/
`--block-size`), greedy decoding of `--new` tokens after a `--prompt`-token prompt, batch 1, fp32,
on the run's device. The two contenders alternate `--repeat` times and the fastest run of each
is kept; they are checked to emit the same tokens. Printed: tokens/s of each and the ratio.
Prompt + new tokens should fit in the block: past it, the cache re-runs the last block each step
(to match the uncached output exactly) and the two cost about the same.

    .venv/bin/python benchmarks/generate.py [--prompt 16] [--new 100] [--repeat 3]
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import time

import torch

from llm_pipeline.lm.model.networks import build_model, generate
from llm_pipeline.lm.settings import ModelConfig, TrainedModelSettings
from llm_pipeline.lm.train.device import resolve_device


def main(argv: list[str] | None = None) -> int:
    defaults = TrainedModelSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--new", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--n-layer", type=int, default=defaults.n_layer)
    parser.add_argument("--n-head", type=int, default=defaults.n_head)
    parser.add_argument("--n-embd", type=int, default=defaults.n_embd)
    parser.add_argument("--block-size", type=int, default=defaults.block_size)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    shape = ModelConfig(
        vocab_size=args.vocab,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
        block_size=args.block_size,
    )
    torch.manual_seed(0)
    model = build_model(shape).to(device).eval()
    prompt = torch.randint(0, args.vocab, (1, args.prompt), device=device)
    print(
        f"device {device}, gpt {shape.n_layer} layers × {shape.n_embd} wide, block "
        f"{shape.block_size}, prompt {args.prompt} + {args.new} new tokens, greedy, batch 1"
    )

    def run(use_cache: bool) -> tuple[float, torch.Tensor]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = generate(model, prompt, args.new, temperature=0, use_cache=use_cache)
        out = out.cpu()
        return args.new / (time.perf_counter() - start), out

    run(True), run(False)  # warm-up
    best = {True: 0.0, False: 0.0}
    outputs = {}
    for _ in range(args.repeat):
        for use_cache in (True, False):
            rate, outputs[use_cache] = run(use_cache)
            best[use_cache] = max(best[use_cache], rate)
    same = torch.equal(outputs[True], outputs[False])
    print(f"KV cache:     {best[True]:10,.0f} tokens/s")
    print(f"no cache:     {best[False]:10,.0f} tokens/s")
    print(f"cache / none: {best[True] / best[False]:10.2f}x   (same tokens: {same})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
