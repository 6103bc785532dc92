"""The one bits-per-byte scorer: documents laid out as in the shards, every target scored once.

Layout: `[eot] doc1 eot doc2 eot ...` — each document's ids followed by end-of-text, preceded
by one end-of-text, exactly as `val.bin` is after its first token. Every token after the first
is a target, scored exactly once.

Windows: `block_size` tokens, advanced by `stride` (default half the block, `EVAL_STRIDE`). The
first window scores all its targets; each later window scores only its last `stride` targets,
so every target but those of the first window sees at least `block_size - stride` tokens of
context (non-overlapping windows would give the first token of every window none). The cost
is `block_size / stride` forward passes per target.

Bytes: the exact UTF-8 bytes of the scored documents, summed from the tokens themselves (in a
byte-level BPE each token is a fixed byte string; end-of-text is zero bytes), so truncation
never estimates them. Truncation (`first_documents`) always falls on a document boundary.

Confidence: the standard error of the byte-weighted mean over documents (a ratio estimator),
in bits per byte.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn

from llm_pipeline.lm.train.device import autocast_context

LN2 = math.log(2.0)
EVAL_STRIDE = 0.5  # stride as a fraction of block_size
# Evaluation gets at most about this share of the training budget by default (trainer_main
# scores this share of the tokens trained on: `eval_targets`).
EVAL_BUDGET_SHARE = 0.10


@dataclass(frozen=True)
class Score:
    """Bits per byte of some documents, with what was scored and the confidence."""

    bits_per_byte: float
    nats: float
    bytes: int
    targets: int
    documents: int
    stderr: float
    stride: int

    @property
    def loss(self) -> float:
        """Mean next-token loss (nats) over the targets."""
        return self.nats / max(self.targets, 1)


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """UTF-8 bytes of each id of a byte-level BPE (one vocabulary character per byte); special
    tokens (end-of-text) are zero bytes: they are not text."""
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    lengths = np.zeros(size, dtype=np.int64)
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    for token, index in tokenizer.get_vocab(with_added_tokens=True).items():
        if token not in special:
            lengths[index] = len(token)
    return lengths


def document_ids(
    tokenizer: Tokenizer, texts: list[str], eot_id: int, end: bool = True
) -> np.ndarray:
    """`[eot] text1 eot text2 eot ...`: texts laid out as the shards lay out documents
    (`end=False` leaves out the last end-of-text: one file scored on its own text only)."""
    ids: list[int] = [eot_id]
    for encoding in tokenizer.encode_batch(texts, add_special_tokens=False):
        ids.extend(encoding.ids)
        ids.append(eot_id)
    return np.asarray(ids if end else ids[:-1], dtype=np.int64)


def first_documents(split_ids: np.ndarray, eot_id: int, max_targets: int) -> np.ndarray:
    """`[eot]` + the longest run of whole documents of a split (`val.bin`) with at most
    `max_targets` tokens, and never less than the first document."""
    ends = np.flatnonzero(np.asarray(split_ids[: max_targets + 1]) == eot_id)
    if len(ends) == 0:  # the first document alone is longer than the budget
        ends = np.flatnonzero(np.asarray(split_ids) == eot_id)[:1]
        if len(ends) == 0:
            return np.asarray([eot_id], dtype=np.int64)
    cut = int(ends[-1]) + 1
    return np.concatenate(([eot_id], np.asarray(split_ids[:cut], dtype=np.int64)))


@torch.no_grad()
def target_losses(
    model: nn.Module,
    ids: np.ndarray,
    block_size: int,
    stride: int,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> np.ndarray:
    """The loss (nats) of every target `ids[1:]`, each scored once in strided windows."""
    model.eval()
    device = torch.device(device)
    n = len(ids)
    out = np.zeros(max(n - 1, 0), dtype=np.float64)
    if n < 2:
        return out
    length = min(block_size, n - 1)
    ends, end = [], length
    while True:  # window k holds targets (start, end]; it scores those after the previous end
        ends.append(end)
        if end >= n - 1:
            break
        end = min(end + stride, n - 1)
    ends_arr = np.asarray(ends)
    previous = np.concatenate(([0], ends_arr[:-1]))
    tokens = torch.from_numpy(np.asarray(ids, dtype=np.int64))
    for lo in range(0, len(ends), batch_size):
        group_end = ends_arr[lo : lo + batch_size]
        starts = group_end - length
        rows = torch.stack([tokens[s : s + length + 1] for s in starts.tolist()])
        x, y = rows[:, :-1].to(device), rows[:, 1:].to(device)
        with autocast_context(device, dtype):
            logits, _ = model(x)
        loss = (
            F.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none"
            )
            .reshape(len(starts), length)
            .cpu()
            .double()
            .numpy()
        )
        for row, (start, stop, prev) in enumerate(
            zip(starts.tolist(), group_end.tolist(), previous[lo : lo + batch_size].tolist())
        ):
            # target index t (into ids) sits at window column t - start - 1
            out[prev:stop] = loss[row, prev - start : stop - start]
    return out


def score_documents(
    model: nn.Module,
    ids: np.ndarray,
    byte_lengths: np.ndarray,
    block_size: int,
    stride: int | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Score:
    """Bits per byte of documents in the shard layout (`document_ids`, `first_documents`)."""
    stride = stride or max(int(block_size * EVAL_STRIDE), 1)
    ids = np.asarray(ids, dtype=np.int64)
    losses = target_losses(model, ids, block_size, stride, batch_size, device, dtype)
    targets = ids[1:]
    target_bytes = byte_lengths[targets]
    n_bytes = int(target_bytes.sum())
    if n_bytes <= 0:
        raise ValueError("bits per byte needs a text of at least one byte")
    nats = float(losses.sum())
    # per document: its tokens and the end-of-text after it (a zero-byte token ends each one)
    is_end = byte_lengths[targets] == 0
    doc_of = np.concatenate(([0], np.cumsum(is_end)[:-1]))
    doc_nats = np.bincount(doc_of, weights=losses)
    doc_bytes = np.bincount(doc_of, weights=target_bytes)
    documents = int(is_end.sum()) or 1
    ratio = nats / n_bytes
    stderr = 0.0
    if documents > 1:
        spread = float(((doc_nats - ratio * doc_bytes) ** 2).sum()) * documents / (documents - 1)
        stderr = math.sqrt(spread) / n_bytes / LN2
    return Score(nats / (LN2 * n_bytes), nats, n_bytes, len(targets), documents, stderr, stride)


def unigram_score(train_ids: np.ndarray, ids: np.ndarray, byte_lengths: np.ndarray) -> float:
    """Bits per byte of a unigram model fitted on the training split (add-one smoothing), on
    the same targets `score_documents` scores: the floor a model that learned context beats."""
    vocab = len(byte_lengths)
    counts = np.zeros(vocab, dtype=np.float64)
    chunk = 1 << 24
    for start in range(0, len(train_ids), chunk):
        counts += np.bincount(train_ids[start : start + chunk], minlength=vocab)[:vocab]
    log_probs = np.log(counts + 1.0) - np.log(counts.sum() + vocab)
    targets = np.asarray(ids[1:], dtype=np.int64)
    return float(-log_probs[targets].sum()) / (LN2 * int(byte_lengths[targets].sum()))
