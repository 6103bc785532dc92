"""Data-parallel helpers: this process's rank, and values agreed over all ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of this process in the initialised process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def max_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """The element-wise maximum over all ranks, the same on every rank."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()


def check_batch_divides(batch_size: int, world_size: int) -> None:
    """Refuse a global batch that cannot be split evenly over the data-parallel ranks."""
    if world_size > 1 and batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} must divide evenly over {world_size} processes")
