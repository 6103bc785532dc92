"""Text in, text out: prompt completion with a checkpoint's own tokenizer.

The report, the `generate` command and the checkpoint check all sample the same way: the prompt
is encoded after an end-of-text token (as a document starts in the shards) and generation stops
at the next end-of-text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import nn

from llm_pipeline.lm.model.networks import generate
from llm_pipeline.lm.store.checkpoint import (
    CheckpointConfig,
    load_model,
    read_config,
    read_tokenizer_json,
)
from llm_pipeline.tokens.bpe import tokenizer_from_json


@dataclass
class LoadedRun:
    """A checkpoint folder loaded for use: model, tokenizer, end-of-text id, saved config."""

    path: Path
    model: nn.Module
    tokenizer: Tokenizer
    eot_id: int
    config: CheckpointConfig


def load_run(path: Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Load model (safetensors), tokenizer (checked against its recorded sha256) and settings
    of one checkpoint folder."""
    path = Path(path)
    config = read_config(path)
    tokenizer = tokenizer_from_json(read_tokenizer_json(path, config))
    model = load_model(path, device)
    return LoadedRun(
        path,
        model,
        tokenizer,
        config.require_tokenizer(path).eot_id,
        config,
    )


def complete(
    run: LoadedRun,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int | None = 40,
    generator: torch.Generator | None = None,
    stop_at_end_of_text: bool = True,
    stats: dict | None = None,
) -> str:
    """The model's continuation of `prompt` (without the prompt and end-of-text tokens).

    `stats`, if given, receives `new_tokens`, `seconds` and `tokens_per_s` of the generation.
    """
    ids = [run.eot_id, *run.tokenizer.encode(prompt, add_special_tokens=False).ids]
    device = next(run.model.parameters()).device
    started = time.perf_counter()
    out = generate(
        run.model,
        torch.tensor([ids], device=device),
        max_new_tokens,
        temperature=temperature,
        top_k=top_k or None,
        generator=generator,
        stop_token=run.eot_id if stop_at_end_of_text else None,
    )
    generated = out[0, len(ids) :].tolist()  # .tolist() waits for the device
    if stats is not None:
        seconds = time.perf_counter() - started
        stats.update(
            new_tokens=len(generated),
            seconds=seconds,
            tokens_per_s=len(generated) / max(seconds, 1e-9),
        )
    new = [t for t in generated if t != run.eot_id]
    return run.tokenizer.decode(new)
