#!/usr/bin/env python
"""Benchmark of the training loop: its overhead, bf16 against fp32, and model FLOP utilisation.

Measured side by side in one run, on one model config, batch and device (by default those of
the `trained_model` asset, read from `TrainedModelSettings`: today gpt, 4 layers, 4 heads, width
128, block 128, batch 16; the vocabulary is the shards'), each contender running the same
number N of optimizer steps:

- pipeline: `llm_pipeline.lm.train.loop.train(...)` with `max_steps=N` and evaluation and logging
  pushed out of the way. Its tokens/s is `tokens_seen / seconds` of the result with nothing
  subtracted: batch sampling, the learning-rate schedule, the loss read back once at the end
  (the loop syncs with the device only at log/eval/checkpoint steps) and the one validation
  batch it scores at the end (`eval_batches=1`) are all its honest cost.
- plain: a minimal PyTorch loop written here in nanoGPT's shape: the same model from
  `build_model`, AdamW, random windows read from a numpy memmap, autocast to the same dtype,
  gradient clipping. Timed the same way (the clock starts once model and optimizer exist).
- pipeline at the other dtype (fp32 when the run's dtype is bf16, and the reverse).

Before timing, every contender runs once for `--warmup` steps, discarded, so one-off costs
(oneDNN kernel creation, allocator growth, thread pool start) land on none of them. Then the
contenders alternate `--repeat` times, the order rotating each round, and the fastest run of each
is kept. Threads are left at PyTorch's default. The machine is meant to be shared, so before
each run the benchmark waits (up to `--max-wait` s) until other processes use under 0.2 CPUs,
and prints next to every run how many CPUs others kept busy during it: a contender whose best
run was disturbed shows it.

Printed: pipeline / plain tokens/s (goal ≥ 1.0: the pipeline adds no cost to the loop),
bf16 / fp32 tokens/s (what autocast buys on this device), and MFU = achieved FLOP/s / peak
FLOP/s, the peak being the best of several square matmuls (`--matmul`, default 2048) timed in
this run in each dtype.

FLOPs per token (the estimate of Kaplan et al. and PaLM, appendix B, that nanoGPT uses):

    gpt: 6·N + 12·L·H·Q·T = 6·N + 12·n_layer·n_embd·block_size     (H·Q = n_embd)
    gru: 6·N

N counts the weights that take part in a matmul once per token. For the GPT: the attention and
MLP matrices (12·n_layer·n_embd²) plus the tied `lm_head` counted once (vocab·n_embd); the
embedding lookup is a gather, not a matmul, and is left out, as are the norms' gains. The 6 is
2 FLOPs per multiply-add × (1 forward + 2 backward). The attention term is QKᵀ and attention·V,
forward and backward, over the full T×T square; a causal kernel may skip the masked half, so
the term is an upper bound and MFU reads high by at most that much (≈ 5% of the FLOPs at the
defaults). For the GRU, N is each layer's input and hidden matrices (3·n_embd² each, the
first layer's input side included) plus the output head; the gates' elementwise work is ignored.

`--preset` takes a model shape and batch from `lm/settings.py` (e.g. `gpt2-124m` on a GPU, with
`--compile` to run the pipeline contenders through `torch.compile`); `--synthetic` trains on
random tokens (vocab 50257) in a temporary folder, for a machine without the built-in shards.

    .venv/bin/python benchmarks/train.py [--shards DIR] [--arch gpt] [--steps 60] [--warmup 10]
        [--repeat 3] [--dtype auto] [--device auto] [--max-wait 60] [--preset NAME] [--compile]
        [--synthetic] [--threads N]
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
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from llm_pipeline import paths
from llm_pipeline.lm.model.networks import build_model
from llm_pipeline.lm.settings import ModelConfig, TrainConfig, TrainedModelSettings
from llm_pipeline.lm.train.device import resolve_device, resolve_dtype
from llm_pipeline.lm.train.loop import train
from llm_pipeline.tokens.shards import read_meta

CORPUS = "python-stdlib-docs"
GOAL_RATIO = 1.0
NOISE_RATIO = 0.97
NEVER = 10**9  # an evaluation / logging interval no benchmark run reaches
DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float32: "fp32"}


def find_shards(given: str | None) -> Path:
    """`--shards`, else the built-in corpus's shards under the data root; exit 2 when missing."""
    shards = Path(given) if given else paths.tokens_dir(CORPUS)
    if not (shards / "meta.json").is_file():
        print(
            f"no token shards in {shards} (no meta.json). Build them first with `make run`, or:\n"
            f"  .venv/bin/llm-pipeline corpus add {CORPUS} --builtin && "
            f".venv/bin/llm-pipeline materialize --corpus {CORPUS}\n"
            "or point --shards at a folder holding train.bin, val.bin and meta.json.",
            file=sys.stderr,
        )
        sys.exit(2)
    return shards


def synthetic_shards(vocab_size: int = 50257, tokens: int = 2_000_000) -> Path:
    """Random-token train/val shards in a temporary folder (throughput only; nothing to learn)."""
    import atexit
    import json
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="train-bench-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", tokens), ("val", tokens // 10)):
        rng.integers(0, vocab_size, n, dtype=np.uint32).astype(np.uint16).tofile(
            folder / f"{split}.bin"
        )
        splits[split] = {"tokens": n, "documents": 1, "bytes": 4 * n}
    meta = {"dtype": "uint16", "vocab_size": vocab_size, "eot_id": 0, "splits": splits}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def _machine_busy_seconds() -> float | None:
    """CPU-seconds all processes have run (from /proc/stat), or None where there is none."""
    try:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """How many CPUs other processes kept busy, on average, while the block ran.

    The machine's busy CPU time minus this process's own: a run that shares its cores with a
    neighbour shows it here (NaN where /proc/stat is missing).
    """

    def __enter__(self) -> OtherLoad:
        self._busy, self._own = _machine_busy_seconds(), _own_cpu_seconds()
        self._started = time.perf_counter()
        self.cpus = float("nan")
        return self

    def __exit__(self, *exc: object) -> None:
        busy, wall = _machine_busy_seconds(), time.perf_counter() - self._started
        if busy is not None and self._busy is not None:
            others = (busy - self._busy) - (_own_cpu_seconds() - self._own)
            self.cpus = max(others, 0.0) / max(wall, 1e-9)


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def wait_for_quiet(max_wait: float, threshold: float = 0.2) -> None:
    """Wait (at most `max_wait` s) until other processes use under `threshold` CPUs."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        with OtherLoad() as load:
            time.sleep(1.0)
        if not load.cpus > threshold:
            return


def matmul_weights(model: nn.Module) -> int:
    """N of the FLOP estimate: weights used in a matmul once per token (tied ones once)."""
    seen: set[int] = set()
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            weights = [module.weight]
        elif isinstance(module, nn.GRU):
            weights = [p for name, p in module.named_parameters() if name.startswith("weight_")]
        else:
            continue
        for weight in weights:
            if id(weight) not in seen:
                seen.add(id(weight))
                total += weight.numel()
    return total


def flops_per_token(config: ModelConfig) -> tuple[int, int]:
    """(N, FLOPs per trained token) for `config`, as documented at the top of this file."""
    n = matmul_weights(build_model(config))
    attention = 12 * config.n_layer * config.n_embd * config.block_size
    return n, 6 * n + (attention if config.architecture == "gpt" else 0)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(size: int, dtype: torch.dtype, device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` (size × size) @ (size × size) matmuls in `dtype`."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.mm(a, b)
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def plain_loop(
    model_config: ModelConfig,
    shards: Path,
    steps: int,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    seed: int = 1337,
) -> float:
    """The minimal PyTorch loop; returns tokens/s over `steps` steps."""
    torch.manual_seed(seed)
    data = np.memmap(shards / "train.bin", dtype=read_meta(shards)["dtype"], mode="r")
    block = model_config.block_size
    model = build_model(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.99), weight_decay=0.1)

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(data) - block - 1, (batch_size,)).tolist()
        x = torch.stack([torch.from_numpy(data[i : i + block].astype(np.int64)) for i in starts])
        y = torch.stack(
            [torch.from_numpy(data[i + 1 : i + 1 + block].astype(np.int64)) for i in starts]
        )
        return x.to(device), y.to(device)

    model.train()
    started = time.perf_counter()
    for _ in range(steps):
        x, y = get_batch()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            _, loss = model(x, y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    return steps * batch_size * block / (time.perf_counter() - started)


def pipeline_loop(
    model_config: ModelConfig,
    shards: Path,
    steps: int,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    compile: bool = False,
) -> float:
    """The pipeline's `train`; returns the result's tokens_seen / seconds."""
    config = TrainConfig(
        compile=compile,
        batch_size=batch_size,
        max_steps=steps,
        eval_interval=NEVER,
        log_interval=NEVER,
        eval_batches=1,
        device=str(device),
        dtype=DTYPE_NAMES[dtype],
    )
    result = train(model_config, config, shards)
    return result.tokens_seen / result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", help="token shard folder (default: the built-in corpus's)")
    defaults = TrainedModelSettings()
    parser.add_argument("--arch", choices=("gpt", "gru"), default=defaults.architecture)
    parser.add_argument("--n-layer", type=int, default=defaults.n_layer)
    parser.add_argument("--n-head", type=int, default=defaults.n_head)
    parser.add_argument("--n-embd", type=int, default=defaults.n_embd)
    parser.add_argument("--block-size", type=int, default=defaults.block_size)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per contender")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each contender; best kept")
    parser.add_argument("--dtype", choices=("auto", "bf16", "fp32"), default=defaults.dtype)
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--matmul", type=int, default=2048, help="side of the peak matmul")
    parser.add_argument(
        "--max-wait", type=float, default=60.0, help="seconds to wait for a quiet machine per run"
    )
    parser.add_argument("--preset", default="", help="model shape and batch from lm/settings.py")
    parser.add_argument("--compile", action="store_true", help="torch.compile the pipeline runs")
    parser.add_argument("--synthetic", action="store_true", help="random-token shards, vocab 50257")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    shards = synthetic_shards() if args.synthetic else find_shards(args.shards)
    meta = read_meta(shards)
    model_config = ModelConfig(
        architecture=args.arch,
        vocab_size=meta["vocab_size"],
        block_size=args.block_size,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
    )
    if args.preset:
        model_config = TrainedModelSettings.resolve(
            {"preset": args.preset, "vocab_size": meta["vocab_size"]}
        )
        args.batch_size, args.block_size = model_config.batch_size, model_config.block_size
        args.n_layer, args.n_head, args.n_embd = (
            model_config.n_layer,
            model_config.n_head,
            model_config.n_embd,
        )
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    other = torch.float32 if dtype == torch.bfloat16 else torch.bfloat16
    n_matmul, flops = flops_per_token(model_config)
    tokens_per_step = args.batch_size * args.block_size

    def contender(loop: Callable[..., float], run_dtype: torch.dtype) -> Callable[[int], float]:
        extra = {"compile": True} if args.compile and loop is pipeline_loop else {}
        return lambda steps: loop(
            model_config, shards, steps, args.batch_size, device, run_dtype, **extra
        )

    name = DTYPE_NAMES[dtype]
    contenders = {
        f"pipeline {name}": (contender(pipeline_loop, dtype), dtype),
        f"plain {name}": (contender(plain_loop, dtype), dtype),
        f"pipeline {DTYPE_NAMES[other]}": (contender(pipeline_loop, other), other),
    }
    print(
        f"\ntraining-loop benchmark: {args.arch} n_layer={args.n_layer} n_head={args.n_head} "
        f"n_embd={args.n_embd} block={args.block_size} batch={args.batch_size} "
        f"vocab={meta['vocab_size']}; device {device}, dtype {name}, "
        f"{torch.get_num_threads()} threads on {os.cpu_count()} CPUs"
    )
    print(
        f"N = {n_matmul:,} matmul weights; {flops / 1e6:.2f} MFLOP per token; "
        f"{tokens_per_step} tokens per step; {args.steps} timed steps after {args.warmup} "
        f"warm-up steps; repeat {args.repeat}"
    )

    peaks = {d: 0.0 for d in DTYPE_NAMES}
    for run, _ in contenders.values():
        run(max(args.warmup, 1))
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label in contenders}
    print(f"\n{'round':<7}{'contender':<16}{'tokens/s':>10}{'GFLOP/s':>9}{'others':>8}")
    labels = list(contenders)
    for round_ in range(args.repeat):
        wait_for_quiet(args.max_wait)
        for d in peaks:
            peaks[d] = max(peaks[d], matmul_peak(args.matmul, d, device))
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            run, _ = contenders[label]
            wait_for_quiet(args.max_wait)
            with OtherLoad() as load:
                rate = run(args.steps)
            runs[label].append((rate, load.cpus))
            print(
                f"{round_ + 1:<7}{label:<16}{rate:>10,.0f}{rate * flops / 1e9:>9.1f}"
                f"{load.cpus:>8.2f}",
                flush=True,
            )
    print("  (others: CPUs kept busy by other processes during the run, on average)")

    best = {label: max(results)[0] for label, results in runs.items()}
    print(f"\nmatmul peak ({args.matmul}² square, best of {5 * args.repeat}):")
    for d, peak in peaks.items():
        print(f"  {DTYPE_NAMES[d]:<5} {peak / 1e9:8.1f} GFLOP/s")
    print("\nbest of each contender")
    print(f"  {'contender':<16}{'tokens/s':>10}{'GFLOP/s':>9}{'MFU':>8}{'others':>8}")
    for label, (rate, others) in ((k, max(v)) for k, v in runs.items()):
        achieved = rate * flops
        mfu = achieved / peaks[contenders[label][1]]
        print(f"  {label:<16}{rate:>10,.0f}{achieved / 1e9:>9.1f}{mfu:>8.1%}{others:>8.2f}")

    pipeline, plain = best[f"pipeline {name}"], best[f"plain {name}"]
    bf16 = best[f"pipeline {DTYPE_NAMES[torch.bfloat16]}"]
    fp32 = best[f"pipeline {DTYPE_NAMES[torch.float32]}"]
    overhead = pipeline / plain
    print("\nratios (measured side by side in this run)")
    print(f"  tokens/s  pipeline / plain ({name})  {overhead:6.3f}   (≥ 1: no cost added)")
    print(f"  tokens/s  bf16 / fp32 (pipeline)    {bf16 / fp32:6.3f}")
    print(
        f"  matmul    bf16 / fp32 peak          {peaks[torch.bfloat16] / peaks[torch.float32]:6.3f}"
    )
    if overhead >= GOAL_RATIO:
        verdict = "met"
    elif overhead >= NOISE_RATIO:
        verdict = f"within noise (≥ {NOISE_RATIO}), not strictly met"
    else:
        verdict = "MISSED"
    print("\ngoals")
    print(f"  pipeline / plain ≥ {GOAL_RATIO:g}   {overhead:.3f}   {verdict}")


if __name__ == "__main__":
    main()
