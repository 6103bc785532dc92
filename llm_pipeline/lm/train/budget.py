"""How far a run is and what it reports: budgets, the logged history, and the final result.

The budget's fraction drives both the learning-rate schedule and the percent/ETA of the log, so
the two always agree on how much of the run is done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from llm_pipeline.lm.settings import TrainConfig


class Budget:
    """The step, token and time limits of a run, read from its settings (`max_steps`,
    `max_tokens`, `max_seconds`); 0 means "no limit" (the settings refuse all three at 0)."""

    def __init__(self, settings: TrainConfig) -> None:
        self.max_steps = settings.max_steps
        self.max_tokens = settings.max_tokens
        self.max_seconds = settings.max_seconds

    def fraction(self, steps: int, tokens: int, elapsed: float) -> float:
        """The largest fraction used of the budgets that are set (1.0 or more: spent)."""
        parts = []
        if self.max_steps > 0:
            parts.append(steps / self.max_steps)
        if self.max_tokens > 0:
            parts.append(tokens / self.max_tokens)
        if self.max_seconds > 0:
            parts.append(elapsed / self.max_seconds)
        return max(parts)

    def reason(self, steps: int, tokens: int) -> str:
        """Which budget ended the run: the step or token one if reached, else the clock."""
        if self.max_steps > 0 and steps >= self.max_steps:
            return "max_steps"
        if self.max_tokens > 0 and tokens >= self.max_tokens:
            return "max_tokens"
        return "max_seconds"


class ProgressLog:
    """The logged rows of a run; the tokens/s of each row covers the steps since the last one."""

    def __init__(self, history: list[dict], progress: Callable[[dict], None] | None) -> None:
        self.history = history
        self.progress = progress
        self.window_start, self.window_tokens = time.perf_counter(), 0

    def add(
        self,
        step: int,
        tokens: int,
        train_loss: float | None,
        val_loss: float | None,
        lr: float,
        elapsed: float,
        fraction: float,
    ) -> None:
        now = time.perf_counter()
        rate = self.window_tokens / max(now - self.window_start, 1e-9)
        done = min(fraction, 1.0)
        row = {
            "step": step,
            "tokens": tokens,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": lr,
            "tokens_per_s": rate,
            "elapsed_s": elapsed,
            "percent": 100.0 * done,
            "eta_s": elapsed * (1 - done) / done if done > 0 else None,
        }
        self.history.append(row)
        self.window_start, self.window_tokens = now, 0
        if self.progress:
            self.progress(row)


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
