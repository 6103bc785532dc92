"""Evaluation in bits per byte: the one number that compares models across tokenizers.

Every score in the pipeline (the trainer's headline, the report, the champion comparison,
`eval_files`) comes from one function, `score_documents` (lm/scoring.py); `sum_nats` is the
plain non-overlapping sum kept for benchmarks that compare against nanoGPT's protocol.

bits/byte = (summed next-token loss in nats) / (ln 2 × UTF-8 bytes of the text). Per-token loss
depends on how much text a token covers; per-byte does not, so a GRU with one tokenizer and a
GPT with another are compared fairly on the same text.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn

from llm_pipeline.lm.scoring import (
    EVAL_BUDGET_SHARE,
    Score,
    document_ids,
    first_documents,
    score_documents,
    token_byte_lengths,
)
from llm_pipeline.lm.train.device import autocast_context

__all__ = [
    "EVAL_BUDGET_SHARE",
    "Score",
    "bits_per_byte",
    "document_ids",
    "first_documents",
    "score_documents",
    "sum_nats",
    "text_bits_per_byte",
    "texts_bits_per_byte",
    "token_byte_lengths",
    "unigram_bits_per_byte",
]

LN2 = math.log(2.0)


def bits_per_byte(nats: float, n_bytes: int) -> float:
    """Convert a summed loss in nats over a text of `n_bytes` UTF-8 bytes to bits per byte."""
    if n_bytes <= 0:
        raise ValueError("bits per byte needs a text of at least one byte")
    return nats / (LN2 * n_bytes)


@torch.no_grad()
def sum_nats(
    model: nn.Module,
    tokens: np.ndarray,
    block_size: int,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[float, int]:
    """Summed next-token loss (nats) over `tokens`, in non-overlapping windows of `block_size`.

    Every token after the first is predicted exactly once. Returns (nats, predicted tokens).
    """
    model.eval()
    device = torch.device(device)
    n = len(tokens)
    if n < 2:
        return 0.0, 0
    starts = list(range(0, n - 1, block_size))
    total = 0.0
    count = 0
    for i in range(0, len(starts), batch_size):
        group = starts[i : i + batch_size]
        full = [s for s in group if s + block_size + 1 <= n]
        partial = [s for s in group if s + block_size + 1 > n]
        batches = []
        if full:
            rows = np.stack([tokens[s : s + block_size + 1] for s in full]).astype(np.int64)
            batches.append(torch.from_numpy(rows))
        for s in partial:  # the tail: a shorter window of its own
            batches.append(torch.from_numpy(np.asarray(tokens[s:n], dtype=np.int64))[None])
        for rows in batches:
            x, y = rows[:, :-1].to(device), rows[:, 1:].to(device)
            with autocast_context(device, dtype):
                logits, _ = model(x)
            loss = F.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum"
            )
            total += loss.item()
            count += y.numel()
    return total, count


def unigram_bits_per_byte(
    train_tokens: np.ndarray, val_tokens: np.ndarray, vocab_size: int, val_bytes: int
) -> float:
    """Bits per byte of a unigram model fitted on the training split (add-one smoothing).

    The floor any model that learned anything must beat: it knows token frequencies, no context.
    """
    counts = np.zeros(vocab_size, dtype=np.float64)
    chunk = 1 << 24
    for start in range(0, len(train_tokens), chunk):
        counts += np.bincount(train_tokens[start : start + chunk], minlength=vocab_size)[
            :vocab_size
        ]
    log_probs = np.log(counts + 1.0) - np.log(counts.sum() + vocab_size)
    nats = 0.0
    for start in range(1, len(val_tokens), chunk):  # same targets as sum_nats: all but the first
        nats -= float(log_probs[np.asarray(val_tokens[start : start + chunk])].sum())
    return bits_per_byte(nats, val_bytes)


def text_bits_per_byte(
    model: nn.Module,
    tokenizer: Tokenizer,
    text: str,
    eot_id: int,
    block_size: int,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> float:
    """Bits per byte of one text (an `eval_files` file) after end-of-text, as a document starts
    in the shards, scored by `score_documents` on the text's own tokens."""
    ids = document_ids(tokenizer, [text], eot_id, end=False)
    return score_documents(model, ids, token_byte_lengths(tokenizer), block_size,
                           device=device, dtype=dtype).bits_per_byte  # fmt: skip


def texts_bits_per_byte(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: list[str],
    eot_id: int,
    block_size: int,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> float:
    """Bits per byte of several documents laid out as in the shards: `score_documents`."""
    ids = document_ids(tokenizer, texts, eot_id)
    return score_documents(model, ids, token_byte_lengths(tokenizer), block_size,
                           device=device, dtype=dtype).bits_per_byte  # fmt: skip
