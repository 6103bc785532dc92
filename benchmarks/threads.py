#!/usr/bin/env python
"""Benchmark of the trainer's thread count: the default (`num_threads: 0`, the CPUs free when a
run starts, `lm/train/threads.py`) against every fixed count, on a quiet machine and with a
synthetic background load, side by side in one run.

Each contender is a fresh process (a thread count is set once per process, and the default is
chosen at start, as the trainer does), training the `trained_model` default model
(`TrainedModelSettings`: shape, batch, AdamW) on random tokens for `--steps` optimizer steps after
`--warmup` discarded ones; its tokens/s is tokens / seconds of the timed steps. The load is
`--load` processes each spinning one CPU, started before the contender and stopped after it.
The contenders alternate `--repeat` times in rotating order and the best run of each is kept.

Printed: a table of tokens/s per contender and condition, and the default's ratio to the best
fixed count in each condition (goal: ≥ 0.9 in both).

    .venv/bin/python benchmarks/threads.py [--steps 30] [--warmup 5] [--repeat 2] [--load 1]
"""

# The import path must be fixed before anything imports the standard library's `tokenize`:
# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import json
import multiprocessing
import subprocess
import time

AUTO = 0


def _spin() -> None:
    while True:
        pass


def child(threads: int, steps: int, warmup: int) -> None:
    """One contender: choose threads as the trainer does, time `steps` training steps."""
    import torch

    from llm_pipeline.lm.model.networks import build_model
    from llm_pipeline.lm.settings import TrainedModelSettings
    from llm_pipeline.lm.train.loop import optimizer_for
    from llm_pipeline.lm.train.threads import choose_threads

    choice = choose_threads(threads)
    torch.set_num_threads(choice.threads)
    settings = TrainedModelSettings(device="cpu")
    torch.manual_seed(0)
    model = build_model(settings)
    optimizer = optimizer_for(model, settings, torch.device("cpu"))
    shape = (settings.batch_size, settings.block_size + 1)
    batch = torch.randint(0, settings.vocab_size, shape)

    def step() -> None:
        _, loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    tokens = steps * settings.batch_size * settings.block_size
    print(json.dumps({"threads": choice.threads, "tokens_per_s": tokens / seconds}))


def measure(threads: int, args: argparse.Namespace, load: int) -> dict:
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(load)]
    for spinner in spinners:
        spinner.start()
    try:
        time.sleep(0.5 if load else 0.0)  # the load is running when the contender starts
        command = [sys.executable, __file__, "--child", str(threads)]
        command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
        out = subprocess.run(
            command,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.join()
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--load", type=int, default=1, help="busy processes in the loaded case")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.steps, args.warmup)
        return
    from llm_pipeline.lm.train.threads import allowed_cpus

    cpus = allowed_cpus()
    contenders = [AUTO, *range(1, cpus + 1)]
    conditions = {"quiet": 0, f"{args.load} busy": args.load}
    best: dict[tuple[str, int], float] = {}
    chosen: dict[str, set[int]] = {name: set() for name in conditions}
    for round_ in range(args.repeat):
        shift = round_ % len(contenders)
        for threads in contenders[shift:] + contenders[:shift]:
            for name, load in conditions.items():
                result = measure(threads, args, load)
                key = (name, threads)
                best[key] = max(best.get(key, 0.0), result["tokens_per_s"])
                if threads == AUTO:
                    chosen[name].add(result["threads"])
    print(f"threads benchmark: {cpus} CPUs allowed, best of {args.repeat}, {args.steps} steps")
    print(f"{'contender':<22}" + "".join(f"{name:>14}" for name in conditions))
    for threads in contenders:
        label = "default (auto)" if threads == AUTO else f"num_threads {threads}"
        row = "".join(f"{best[(name, threads)]:>14,.0f}" for name in conditions)
        print(f"{label:<22}{row}")
    for name in conditions:
        fixed = max(best[(name, t)] for t in contenders if t != AUTO)
        picked = ", ".join(map(str, sorted(chosen[name])))
        print(
            f"{name}: default / best fixed = {best[(name, AUTO)] / fixed:.2f} "
            f"(default picked {picked} thread(s))"
        )


if __name__ == "__main__":
    main()
