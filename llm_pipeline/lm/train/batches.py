"""Batches for training and evaluation: random windows of the token shards, and a fixed-batch loss.

Kept apart from the loop so the benchmarks and tests draw batches exactly as training does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from llm_pipeline.lm.settings import ModelConfig
from llm_pipeline.lm.train.device import autocast_context
from llm_pipeline.tokens.shards import open_split


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


def check_data_fits(shard_dir: Path, model_config: ModelConfig) -> None:
    """Refuse a run that cannot work, before any training time is spent."""
    for split in ("train", "val"):
        n = len(open_split(shard_dir, split))
        if n == 0:
            side = "training" if split == "train" else "validation"
            raise ValueError(
                f"the {side} side of the split is empty ({shard_dir / f'{split}.bin'} holds 0 "
                f"tokens): cleaned_corpus put no document there; its split.json and the "
                f"split_expectations check say why (re-materialize cleaned_corpus, or add text)"
            )
        if n <= model_config.block_size + 1:
            raise ValueError(
                f"{split} split has {n} tokens, not more than block_size + 1 = "
                f"{model_config.block_size + 1}; lower block_size or add text"
            )


def fixed_batches(
    data: np.ndarray, batch_size: int, block_size: int, seed: int, count: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` batches drawn once from `seed`: the same ones at every evaluation of a run."""
    generator = torch.Generator().manual_seed(seed)
    return [sample_batch(data, batch_size, block_size, generator) for _ in range(count)]
