"""Model FLOPs utilisation: the model's FLOPs per token against the device's *measured* peak.

A vendor's datasheet peak means little on a shared 2-core VM (or a GPU clocked down), so the
denominator is what a large square matmul actually reaches here, in the dtype training uses.
The numerator follows nanoGPT/PaLM: 6 FLOPs per parameter per token (forward + backward) plus
the attention scores, 12 · layers · width · context per token.
"""

from __future__ import annotations

import time
from functools import cache

import torch

from llm_pipeline.lm.settings import ModelConfig


def flops_per_token(config: ModelConfig, n_params: int) -> float:
    """Training FLOPs per token (forward and backward) of a model with `n_params` parameters."""
    attention = 12 * config.n_layer * config.n_embd * config.block_size
    return 6.0 * n_params + (attention if config.architecture != "gru" else 0)


@cache
def _peak(device_type: str, device_index: int | None, dtype: torch.dtype, size: int) -> float:
    device = torch.device(device_type, device_index)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):  # warm-up: kernel selection, caches, clocks
        a @ b
    sync()
    best = float("inf")
    reps = 20 if device.type == "cuda" else 3
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        best = min(best, (time.perf_counter() - start) / reps)
    return 2.0 * size**3 / best


def matmul_peak_flops(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, size: int | None = None
) -> float:
    """FLOP/s of the best of a few timed `size`×`size` matmuls on `device` (cached per process).

    bf16 on CPU is timed as a bf16 matmul, which is what autocast runs.
    """
    device = torch.device(device)
    if size is None:
        size = 8192 if device.type == "cuda" else 1024
    return _peak(device.type, device.index, dtype, size)


def measured_mfu(
    per_token: float,
    tokens: int,
    seconds: float,
    device: torch.device,
    dtype: torch.dtype,
    world_size: int = 1,
) -> tuple[float, float]:
    """(one device's measured peak FLOP/s, model FLOPs utilisation over `world_size` devices)."""
    peak = matmul_peak_flops(device, dtype)
    return peak, per_token * tokens / seconds / (peak * world_size)
