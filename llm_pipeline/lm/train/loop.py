"""The training loop: AdamW, warm-up + cosine, clipping, accumulation, budgets, fixed-batch eval.

Plain PyTorch in nanoGPT's shape: `train()` is a short loop over a `TrainingRun`'s steps.
The learning-rate schedule runs on *progress* (the largest fraction used of the step, token
and time budgets) rather than on steps alone, so a run sized by `max_seconds` still warms up,
decays and ends at the floor exactly when the budget runs out.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from llm_pipeline.lm.model.networks import build_model, count_parameters
from llm_pipeline.lm.settings import ModelConfig, TrainConfig
from llm_pipeline.lm.train.batches import (
    check_data_fits,
    estimate_loss,
    fixed_batches,
    sample_batch,
)
from llm_pipeline.lm.train.budget import Budget, ProgressLog, TrainResult
from llm_pipeline.lm.train.device import autocast_context, resolve_device, resolve_dtype
from llm_pipeline.lm.train.distributed import (
    check_batch_divides,
    distributed_rank,
    max_over_ranks,
    mean_over_ranks,
)
from llm_pipeline.lm.train.perf import flops_per_token, measured_mfu
from llm_pipeline.lm.train.resume import restore_run, resume_key, save_run
from llm_pipeline.lm.train.threads import choose_threads
from llm_pipeline.tokens.shards import open_split


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


class TrainingRun:
    """One training run's state, advanced one optimizer step at a time.

    `train()` is the loop: `while not run.should_stop(): run.step(); run.after_step()`, then
    `run.finish()`. Everything the steps share (step count, tokens, clocks, the last loss, the
    history) lives here instead of in closures, so each piece can be read on its own.
    """

    def __init__(
        self,
        model_config: ModelConfig,
        config: TrainConfig,
        shard_dir: Path,
        progress: Callable[[dict], None] | None = None,
        stop_requested: Callable[[], bool] | None = None,
        state_root: Path | None = None,
        threads: int | None = None,
    ) -> None:
        check_data_fits(shard_dir, model_config)
        self.model_config, self.config = model_config, config
        self.progress, self.stop_requested = progress, stop_requested
        self.budget = Budget(config)
        self.rank, self.world_size = distributed_rank()
        check_batch_divides(config.batch_size, self.world_size)
        if self.world_size > 1:
            state_root = None  # a resumable state holds one process's RNG: single-process only
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.device = self._place_device()
        if threads is None and (config.num_threads > 0 or self.device.type == "cpu"):
            # 0 ("auto"): the CPUs free now, shared among the ranks on this machine (threads.py).
            choice = choose_threads(config.num_threads).threads
            threads = choice if config.num_threads else max(1, choice // self.world_size)
        if threads:
            torch.set_num_threads(threads)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.train_data = open_split(shard_dir, "train")
        val_data = open_split(shard_dir, "val")
        self.model = build_model(model_config).to(self.device)
        self.optimizer = optimizer_for(self.model, config, self.device)
        self.eval_batches = fixed_batches(
            val_data,
            config.batch_size,
            model_config.block_size,
            config.seed + 1,
            config.eval_batches,
        )
        self.batch_generator = torch.Generator().manual_seed(config.seed)
        self.tokens_per_step = config.batch_size * config.grad_accum_steps * model_config.block_size
        self.steps, self.tokens_seen, self.history = 0, 0, []
        elapsed_before = 0.0
        self.state_path = None
        if state_root is not None:
            key = resume_key(
                ModelConfig.fields_of(model_config), TrainConfig.fields_of(config), shard_dir
            )
            self.state_path = Path(state_root) / key
            elapsed_before = self._resume()
        self.resumed_from_step = self.steps
        self.ddp = None
        step_model: nn.Module = self.model
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            step_model = self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        self.step_model = torch.compile(step_model) if config.compile else step_model
        self.pin = self.device.type == "cuda"
        self.started = time.perf_counter() - elapsed_before
        self.last_checkpoint = time.perf_counter()
        self.checkpoint_steps: list[int] = []
        self.log = ProgressLog(self.history, self.progress)
        self.stop_reason = ""
        self.step_loss: torch.Tensor | None = None  # on the device; read only when needed
        self.model.train()
        self.done = self.fraction_done(elapsed_before)
        self.lr = learning_rate(config, self.steps, self.done)

    def _place_device(self) -> torch.device:
        device = resolve_device(self.config.device)
        if self.world_size > 1 and device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank)))
            torch.cuda.set_device(device)
        return device

    def _resume(self) -> float:
        """Continue from the saved state, if any (`lm.train.resume`); the seconds already run."""
        args = (self.model, self.optimizer, self.batch_generator, self.device)
        saved = restore_run(self.state_path, self.config.resume, *args)
        if saved is None:
            return 0.0
        self.steps, self.tokens_seen = saved["step"], saved["tokens_seen"]
        self.history = saved["history"]
        return saved["elapsed_s"]

    def fraction_done(self, elapsed: float) -> float:
        return self.budget.fraction(self.steps, self.tokens_seen, elapsed)

    def should_stop(self) -> bool:
        """True when a budget is spent or a stop was asked for (then `stop_reason` says which)."""
        elapsed = time.perf_counter() - self.started
        done = self.fraction_done(elapsed)
        if self.world_size > 1:
            # Clocks and stop requests differ by rank; every rank must use the same progress
            # (it sets the learning rate) and stop at the same step, or DDP drifts or hangs.
            asked = bool(self.stop_requested and self.stop_requested())
            done, any_asked = max_over_ranks([done, float(asked)], self.device)
            if done >= 1.0 or any_asked:
                budget = self.budget.reason(self.steps, self.tokens_seen)
                self.stop_reason = "stopped" if done < 1.0 else budget
                return True
        elif done >= 1.0:
            self.stop_reason = self.budget.reason(self.steps, self.tokens_seen)
            return True
        elif self.stop_requested and self.stop_requested():
            self.stop_reason = "stopped"
            if self.state_path is not None and self.steps > self.resumed_from_step:
                self.save_state()
            return True
        self.done = done
        return False

    def step(self) -> None:
        """One optimizer step: set the learning rate, accumulate micro-batches, clip, update."""
        config = self.config
        self.lr = learning_rate(config, self.steps, self.done)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        total = torch.zeros((), device=self.device)
        for micro in range(config.grad_accum_steps):
            # DDP averages gradients once per optimizer step, on the last micro-batch.
            last = micro == config.grad_accum_steps - 1
            sync = self.ddp.no_sync() if self.ddp is not None and not last else nullcontext()
            with sync:
                loss = self._micro_batch_loss()
                (loss / config.grad_accum_steps).backward()
            total += loss.detach()
        self.step_loss = total / config.grad_accum_steps
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        self.tokens_seen += self.tokens_per_step
        self.log.window_tokens += self.tokens_per_step

    def _micro_batch_loss(self) -> torch.Tensor:
        x, y = sample_batch(
            self.train_data,
            self.config.batch_size,
            self.model_config.block_size,
            self.batch_generator,
            self.rank,
            self.world_size,
        )
        if self.pin:
            x, y = x.pin_memory(), y.pin_memory()
        device, pin = self.device, self.pin
        with autocast_context(device, self.dtype):
            x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
            _, loss = self.step_model(x, y)
        return loss

    def after_step(self) -> bool:
        """Log, evaluate and save when due; False when the loss diverged (the run must end)."""
        evaluate = self.steps % self.config.eval_interval == 0
        log = evaluate or self.steps % self.config.log_interval == 0
        save = self.checkpoint_due()
        if not (log or save):
            return True
        if self.world_size > 1:  # log steps are the same on every rank; saves are off (above)
            self.step_loss = mean_over_ranks(self.step_loss)
        train_loss = self.step_loss.item()  # the one host-device sync, at log/save steps only
        if not math.isfinite(train_loss):
            self.stop_reason = "diverged"
            self.log_row(None, None)
            return False
        if log:
            self.log_row(train_loss, self.validation_loss() if evaluate else None)
        if save:
            self.save_state()
        return True

    def validation_loss(self) -> float:
        return estimate_loss(self.model, self.eval_batches, self.device, self.dtype)

    def log_row(self, train_loss: float | None, val_loss: float | None) -> None:
        elapsed = time.perf_counter() - self.started
        done = self.fraction_done(elapsed)
        self.log.add(self.steps, self.tokens_seen, train_loss, val_loss, self.lr, elapsed, done)

    def checkpoint_due(self) -> bool:
        if self.state_path is None:
            return False
        every = self.config.checkpoint_interval_steps
        if every and self.steps % every == 0:
            return True
        minutes = self.config.checkpoint_interval_minutes
        return bool(minutes) and time.perf_counter() - self.last_checkpoint >= 60.0 * minutes

    def save_state(self) -> None:
        """Write the resumable training state (weights, optimizer, RNG, counters, history)."""
        state = {
            "step": self.steps,
            "tokens_seen": self.tokens_seen,
            "elapsed_s": time.perf_counter() - self.started,
            "batches_drawn": self.steps * self.config.grad_accum_steps,
            "history": self.history,
            "model": ModelConfig.fields_of(self.model_config),
            "training": TrainConfig.fields_of(self.config),
        }
        args = (self.model, self.optimizer, self.batch_generator, self.device)
        save_run(self.state_path, *args, state)
        self.checkpoint_steps.append(self.steps)
        self.last_checkpoint = time.perf_counter()

    def finish(self) -> TrainResult:
        """End on a row with a validation loss (unless diverged) and measure the run."""
        self._final_row()
        self.model.eval()
        seconds = time.perf_counter() - self.started
        per_token = flops_per_token(self.model_config, count_parameters(self.model))
        peak = mfu = None
        if self.config.measure_mfu and seconds > 0:
            args = (per_token, self.tokens_seen, seconds, self.device, self.dtype, self.world_size)
            peak, mfu = measured_mfu(*args)
        return TrainResult(
            model=self.model,
            optimizer=self.optimizer,
            history=self.history,
            steps=self.steps,
            tokens_seen=self.tokens_seen,
            seconds=seconds,
            stop_reason=self.stop_reason,
            device=str(self.device),
            dtype=str(self.dtype).removeprefix("torch."),
            resumed_from_step=self.resumed_from_step,
            checkpoint_steps=self.checkpoint_steps,
            state_path=None if self.state_path is None else str(self.state_path),
            flops_per_token=per_token,
            peak_flops=peak,
            mfu=mfu,
        )

    def _final_row(self) -> None:
        history, step_loss = self.history, self.step_loss
        if self.world_size > 1 and step_loss is not None:
            step_loss = mean_over_ranks(step_loss)  # every rank leaves at the same step
        final = None if step_loss is None else step_loss.item()
        if self.stop_reason != "diverged" and final is not None and not math.isfinite(final):
            self.stop_reason = "diverged"
        if history and history[-1]["step"] == self.steps:
            if history[-1]["val_loss"] is not None:
                self.stop_reason = self.stop_reason or "done"
            elif self.stop_reason != "diverged":
                history.pop()  # replaced by the final row below, which has a validation loss
        if self.stop_reason != "diverged" and (not history or history[-1]["step"] != self.steps):
            self.log_row(final, self.validation_loss())


def train(
    model_config: ModelConfig,
    config: TrainConfig,
    shard_dir: Path,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    state_root: Path | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Train a model on `shard_dir`'s `train.bin`, evaluating on fixed `val.bin` batches.

    `progress` receives every logged row (step, train/val loss, lr, tokens/s, percent, ETA).

    With `state_root`, the run keeps its training state in `state_root/<key>/` (key: hash of the
    model and training config and the shards; see `lm.train.resume`), every
    `checkpoint_interval_steps` steps and/or `checkpoint_interval_minutes` minutes and when
    `should_stop` ends it early, and a later call with the same inputs continues from there
    (unless `config.resume` is False). `threads` (CPU threads) defaults to `config.num_threads`,
    or when that is 0 to the CPUs free when the run starts (`lm/train/threads.py`). The loss is read
    back from the device only at log, evaluation and checkpoint steps, so the hot loop never
    waits on the GPU.
    """
    run = TrainingRun(model_config, config, shard_dir, progress, should_stop, state_root, threads)
    while not run.should_stop():
        run.step()
        if not run.after_step():
            break
    return run.finish()
