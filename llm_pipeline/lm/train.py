"""The training loop: AdamW, warm-up + cosine, clipping, accumulation, budgets, fixed-batch eval.

Plain PyTorch, one function, nanoGPT's shape. The learning-rate schedule runs on *progress*
(the largest fraction used of the step, token and time budgets) rather than on steps alone, so
a run sized by `max_seconds` still warms up, decays and ends at the floor exactly when the
budget runs out.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from llm_pipeline.lm.model import ModelConfig, build_model, count_parameters
from llm_pipeline.lm.perf import flops_per_token, matmul_peak_flops
from llm_pipeline.lm.resume import (
    capture_rng,
    clear_training_state,
    has_training_state,
    load_training_state,
    load_weights_into,
    restore_rng,
    resume_key,
    save_training_state,
)
from llm_pipeline.lm.settings import TrainConfig
from llm_pipeline.tokens.shards import open_split


def resolve_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA, else Apple MPS, else CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmuls (AVX-512 BF16 or AMX), where autocast pays."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """bf16 autocast where the device runs it natively, fp32 otherwise (or as configured)."""
    if name == "fp32":
        return torch.float32
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_supports_bf16():
        return torch.bfloat16
    return torch.float32


def autocast_context(device: torch.device, dtype: torch.dtype):
    """Autocast to `dtype` (no-op for fp32); parameters and optimizer state stay fp32."""
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)


def sample_batch(
    data: np.ndarray,
    batch_size: int,
    block_size: int,
    generator: torch.Generator,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of `block_size` tokens and their next-token targets.

    Data-parallel ranks share one generator stream and each keeps its slice of the same
    `batch_size` windows, so the global batch is exactly the single-process batch.
    """
    starts = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
    if world_size > 1:
        share = batch_size // world_size
        starts = starts[rank * share : (rank + 1) * share]
    rows = np.stack([data[s : s + block_size + 1] for s in starts.tolist()]).astype(np.int64)
    tensor = torch.from_numpy(rows)
    return tensor[:, :-1], tensor[:, 1:]


def optimizer_for(model: nn.Module, config: TrainConfig, device: torch.device):
    """AdamW with weight decay on matrices only (not on norms, biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = device.type == "cuda"
    return torch.optim.AdamW(
        groups, lr=config.learning_rate, betas=(config.beta1, config.beta2), fused=fused
    )


def learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over `warmup_steps`, then cosine from the peak to `min_lr_ratio` × peak."""
    peak = config.learning_rate
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    floor = peak * config.min_lr_ratio
    progress = min(max(progress, 0.0), 1.0)
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    """What a finished run hands to checkpointing and evaluation.

    `seconds`, `steps` and `tokens_seen` count the whole run, including the part before a resume.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    history: list[dict]
    steps: int
    tokens_seen: int
    seconds: float
    stop_reason: str
    device: str
    dtype: str
    resumed_from_step: int = 0
    checkpoint_steps: list[int] = field(default_factory=list)
    state_path: str | None = None
    flops_per_token: float = 0.0
    peak_flops: float | None = None
    mfu: float | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_seen / max(self.seconds, 1e-9)


@torch.no_grad()
def estimate_loss(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    dtype: torch.dtype,
) -> float:
    """Mean loss over a fixed list of batches (the same ones at every evaluation)."""
    model.eval()
    losses = []
    for x, y in batches:
        with autocast_context(device, dtype):
            _, loss = model(x.to(device), y.to(device))
        losses.append(loss.item())
    model.train()
    return float(np.mean(losses))


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of this process in the initialised process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _max_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """The element-wise maximum over all ranks, the same on every rank."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


def _mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()


def check_data_fits(shard_dir: Path, model_config: ModelConfig) -> None:
    """Refuse a run that cannot work, before any training time is spent."""
    for split in ("train", "val"):
        n = len(open_split(shard_dir, split))
        if n <= model_config.block_size + 1:
            raise ValueError(
                f"{split} split has {n} tokens, not more than block_size + 1 = "
                f"{model_config.block_size + 1}; lower block_size or add text"
            )


def train(
    model_config: ModelConfig,
    config: TrainConfig,
    shard_dir: Path,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    state_root: Path | None = None,
) -> TrainResult:
    """Train a model on `shard_dir`'s `train.bin`, evaluating on fixed `val.bin` batches.

    `progress` receives every logged row (step, train/val loss, lr, tokens/s, percent, ETA).

    With `state_root`, the run keeps its training state in `state_root/<key>/` (key: hash of the
    model and training config and the shards; see `lm.resume`), every
    `checkpoint_interval_steps` steps and/or `checkpoint_interval_minutes` minutes and when
    `should_stop` ends it early, and a later call with the same inputs continues from there
    (unless `config.resume` is False). The loss is read back from the device only at log,
    evaluation and checkpoint steps, so the hot loop never waits on the GPU.
    """
    model_config.validate()
    config.validate()
    check_data_fits(shard_dir, model_config)
    rank, world_size = distributed_rank()
    if world_size > 1 and config.batch_size % world_size:
        raise ValueError(
            f"batch_size {config.batch_size} must divide evenly over {world_size} processes"
        )
    if world_size > 1:
        state_root = None  # a resumable state holds one process's RNG: single-process runs only
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    if world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    dtype = resolve_dtype(config.dtype, device)
    train_data = open_split(shard_dir, "train")
    val_data = open_split(shard_dir, "val")

    model = build_model(model_config).to(device)
    optimizer = optimizer_for(model, config, device)

    eval_generator = torch.Generator().manual_seed(config.seed + 1)
    eval_batches = [
        sample_batch(val_data, config.batch_size, model_config.block_size, eval_generator)
        for _ in range(config.eval_batches)
    ]
    batch_generator = torch.Generator().manual_seed(config.seed)
    tokens_per_step = config.batch_size * config.grad_accum_steps * model_config.block_size

    history: list[dict] = []
    tokens_seen = 0
    step = 0
    elapsed_before = 0.0
    state_path = None
    if state_root is not None:
        key = resume_key(model_config.to_dict(), config.to_dict(), shard_dir)
        state_path = Path(state_root) / key
        if not config.resume:
            clear_training_state(state_path)
        elif has_training_state(state_path):
            saved = load_training_state(state_path)
            load_weights_into(model, state_path)
            optimizer.load_state_dict(saved.optimizer)
            restore_rng(saved.rng, batch_generator, device)
            step = saved.state["step"]
            tokens_seen = saved.state["tokens_seen"]
            elapsed_before = saved.state["elapsed_s"]
            history = saved.state["history"]
    resumed_from_step = step
    step_model: nn.Module = model
    ddp = None
    if world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        step_model = ddp = DistributedDataParallel(model, device_ids=ids)
    step_model = torch.compile(step_model) if config.compile else step_model
    pin = device.type == "cuda"

    started = time.perf_counter() - elapsed_before
    last_checkpoint = time.perf_counter()
    checkpoint_steps: list[int] = []
    window_start, window_tokens = time.perf_counter(), 0
    stop_reason = ""
    step_loss: torch.Tensor | None = None  # on the device; read only when needed

    def fraction_done(elapsed: float) -> float:
        parts = []
        if config.max_steps > 0:
            parts.append(step / config.max_steps)
        if config.max_tokens > 0:
            parts.append(tokens_seen / config.max_tokens)
        if config.max_seconds > 0:
            parts.append(elapsed / config.max_seconds)
        return max(parts)

    def log_row(train_loss: float | None, val_loss: float | None, lr: float) -> None:
        nonlocal window_start, window_tokens
        now = time.perf_counter()
        elapsed = now - started
        rate = window_tokens / max(now - window_start, 1e-9)
        done = min(fraction_done(elapsed), 1.0)
        row = {
            "step": step,
            "tokens": tokens_seen,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": lr,
            "tokens_per_s": rate,
            "elapsed_s": elapsed,
            "percent": 100.0 * done,
            "eta_s": elapsed * (1 - done) / done if done > 0 else None,
        }
        history.append(row)
        window_start, window_tokens = now, 0
        if progress:
            progress(row)

    def save_state() -> None:
        nonlocal last_checkpoint
        state = {
            "step": step,
            "tokens_seen": tokens_seen,
            "elapsed_s": time.perf_counter() - started,
            "batches_drawn": step * config.grad_accum_steps,
            "history": history,
            "model": model_config.to_dict(),
            "training": config.to_dict(),
        }
        rng = capture_rng(batch_generator, device)
        save_training_state(state_path, model, optimizer, rng, state)
        checkpoint_steps.append(step)
        last_checkpoint = time.perf_counter()

    def checkpoint_due() -> bool:
        if state_path is None:
            return False
        if config.checkpoint_interval_steps and step % config.checkpoint_interval_steps == 0:
            return True
        minutes = config.checkpoint_interval_minutes
        return bool(minutes) and time.perf_counter() - last_checkpoint >= 60.0 * minutes

    model.train()
    lr = learning_rate(config, step, fraction_done(elapsed_before))
    while True:
        elapsed = time.perf_counter() - started
        done = fraction_done(elapsed)
        if world_size > 1:
            # Clocks and stop requests differ by rank; every rank must use the same progress
            # (it sets the learning rate) and stop at the same step, or DDP drifts or hangs.
            asked = bool(should_stop and should_stop())
            done, any_asked = _max_over_ranks([done, float(asked)], device)
            if done >= 1.0 or any_asked:
                budget = _budget_reason(config, step, tokens_seen, elapsed)
                stop_reason = "stopped" if done < 1.0 else budget
                break
        elif done >= 1.0:
            stop_reason = _budget_reason(config, step, tokens_seen, elapsed)
            break
        elif should_stop and should_stop():
            stop_reason = "stopped"
            if state_path is not None and step > resumed_from_step:
                save_state()
            break
        lr = learning_rate(config, step, done)
        for group in optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=device)
        for micro in range(config.grad_accum_steps):
            x, y = sample_batch(
                train_data,
                config.batch_size,
                model_config.block_size,
                batch_generator,
                rank,
                world_size,
            )
            if pin:
                x, y = x.pin_memory(), y.pin_memory()
            # DDP averages gradients once per optimizer step, on the last micro-batch.
            last = micro == config.grad_accum_steps - 1
            sync = ddp.no_sync() if ddp is not None and not last else contextlib.nullcontext()
            with sync:
                with autocast_context(device, dtype):
                    x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
                    _, loss = step_model(x, y)
                (loss / config.grad_accum_steps).backward()
            total += loss.detach()
        step_loss = total / config.grad_accum_steps
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += tokens_per_step
        window_tokens += tokens_per_step
        evaluate = step % config.eval_interval == 0
        log = evaluate or step % config.log_interval == 0
        save = checkpoint_due()
        if not (log or save):
            continue
        if world_size > 1:  # log steps are the same on every rank; saves are off (see above)
            step_loss = _mean_over_ranks(step_loss)
        train_loss = step_loss.item()  # the one host-device sync, at log/checkpoint steps only
        if not math.isfinite(train_loss):
            stop_reason = "diverged"
            log_row(None, None, lr)
            break
        if log:
            val = estimate_loss(model, eval_batches, device, dtype) if evaluate else None
            log_row(train_loss, val, lr)
        if save:
            save_state()
    if world_size > 1 and step_loss is not None:
        step_loss = _mean_over_ranks(step_loss)  # every rank leaves the loop at the same step
    if stop_reason != "diverged" and step_loss is not None:
        final_loss = step_loss.item()
        if not math.isfinite(final_loss):
            stop_reason = "diverged"
    if history and history[-1]["step"] == step:
        if history[-1]["val_loss"] is not None:
            stop_reason = stop_reason or "done"
        elif stop_reason != "diverged":
            history.pop()  # replaced by the final row below, which has a validation loss
    if stop_reason != "diverged" and (not history or history[-1]["step"] != step):
        final = None if step_loss is None else step_loss.item()
        log_row(final, estimate_loss(model, eval_batches, device, dtype), lr)
    model.eval()
    seconds = time.perf_counter() - started
    per_token = flops_per_token(model_config, count_parameters(model))
    peak = mfu = None
    if config.measure_mfu and seconds > 0:
        peak = matmul_peak_flops(device, dtype)
        mfu = per_token * tokens_seen / seconds / (peak * world_size)  # peak is one device's
    return TrainResult(
        model=model,
        optimizer=optimizer,
        history=history,
        steps=step,
        tokens_seen=tokens_seen,
        seconds=seconds,
        stop_reason=stop_reason,
        device=str(device),
        dtype=str(dtype).removeprefix("torch."),
        resumed_from_step=resumed_from_step,
        checkpoint_steps=checkpoint_steps,
        state_path=None if state_path is None else str(state_path),
        flops_per_token=per_token,
        peak_flops=peak,
        mfu=mfu,
    )


def _budget_reason(config: TrainConfig, step: int, tokens: int, elapsed: float) -> str:
    if config.max_steps > 0 and step >= config.max_steps:
        return "max_steps"
    if config.max_tokens > 0 and tokens >= config.max_tokens:
        return "max_tokens"
    return "max_seconds"


if __name__ == "__main__":  # `python -m llm_pipeline.lm.train --job job.json`: see trainer_main
    from llm_pipeline.lm.trainer_main import main

    raise SystemExit(main())
