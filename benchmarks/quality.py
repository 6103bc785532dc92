#!/usr/bin/env python
"""Benchmark of model quality for a fixed time budget: our default GPT against nanoGPT's CPU config.

On two corpora, each contender is trained by the pipeline's own `train(...)` with `max_seconds`
= the budget, and then scored on the *whole* validation split: summed next-token nats from
`lm.scoring.score_documents`, the pipeline's one scorer (strided windows, every target scored
once with context, exact UTF-8 bytes of what was scored, fp32), as the `trained_model` asset
scores.
Bits per byte does not depend on how much text a token covers, so it is the fair number across
models with different context lengths.

Corpora (tokenizer and shards built here with the pipeline's `train_bpe`/`write_shards`, vocab
`--vocab`, 5% of documents for validation, cached under benchmarks/.work/quality/):

- `builtin`: the built-in corpus, docstrings of the Python standard library
  (`llm_pipeline.text.read.builtin`), exact duplicates dropped;
- `prose`: the Python language reference's prose as shipped with every CPython
  (`pydoc_data.topics`, PSF licence), one document per paragraph.

(`--shards DIR` runs on one existing shard folder instead.)

Contenders, same loop, same dtype (the asset's `auto`: bf16 autocast where the CPU has it), same
wall-clock budget, run one after the other in this process:

- ours: the `trained_model` asset's defaults (`TrainedModelSettings()`): today a 2-layer, 4-head,
  128-wide GPT with rotary positions, RMSNorm, no biases, block 128; batch 8, peak lr 2e-3,
  warm-up 30, cosine to 10%, β2 0.99;
- nanogpt: nanoGPT's documented CPU config (README, "I only have a macbook"): learned position
  embeddings, LayerNorm, GELU, biases, 4 layers, 4 heads, 128 wide, block 64, batch 12, with
  its train_shakespeare_char recipe: lr 1e-3, warm-up 100, cosine to 1e-4, β2 0.99, decay 0.1,
  dropout 0 (its `max_iters=2000` becomes the time budget, which the schedule follows).
- gru (`--gru`): the classic GRU, width matched to our GPT's parameter count.
- swiglu or gelu (`--mlp`): ours with the other feed-forward block (`ModelConfig.mlp`).

Ours must reach the lower bits per byte on both corpora. A unigram model fitted on the training
split is printed as the floor any learning must beat.

Time budgets are wall clock: on a shared machine a busy neighbour buys fewer steps. Each run
waits (up to `--max-wait` s) for a quiet machine first, and steps, tokens/s and the CPUs other
processes kept busy during training ("others") are printed next to every result, so a
disturbed run shows. Default runtime: 2 corpora × 2 contenders × 90 s, plus building the
shards once, waits and scoring: about 7 minutes.

    .venv/bin/python benchmarks/quality.py [--corpora builtin,prose] [--seconds 90]
        [--vocab 4096] [--gru] [--mlp] [--curve 30,60] [--dtype auto] [--max-wait 60] [--shards DIR]
        [--threads N]

On a machine shared with other busy processes, `--threads 1` avoids the OpenMP
oversubscription that can slow a 2-thread run several-fold (measured here: 1 s vs 0.2 s a step).
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
import hashlib
import os
import re
from dataclasses import dataclass, replace

import numpy as np
import torch

# The sibling benchmarks/train.py: where the shards are, and how busy the neighbours are.
from train import OtherLoad, find_shards, wait_for_quiet

from llm_pipeline.lm.model.networks import build_model, count_parameters
from llm_pipeline.lm.scoring import score_documents, token_byte_lengths, unigram_score
from llm_pipeline.lm.settings import ModelConfig, TrainConfig, TrainedModelSettings
from llm_pipeline.lm.train.loop import train
from llm_pipeline.text.split.sides import assign_sides, split_key
from llm_pipeline.tokens.bpe import end_of_text_id, save_tokenizer, train_bpe
from llm_pipeline.tokens.shards import open_split, read_meta, write_shards

WORK = _HERE / ".work" / "quality"
CORPUS_VERSION = 2  # 2: the split of text/split/sides.py, tokenizer on the train side


def _val_layout(shards: Path) -> tuple[np.ndarray, np.ndarray]:
    """The whole validation split as the trainer scores it (`[eot]` + `val.bin`), and the UTF-8
    bytes of every token id of the corpus's tokenizer."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(shards / "tokenizer.json"))
    val = np.asarray(open_split(shards, "val"), dtype=np.int64)
    eot = read_meta(shards)["eot_id"]
    return np.concatenate(([eot], val)), token_byte_lengths(tokenizer)


def nanogpt_baseline(vocab_size: int, dtype: str) -> tuple[ModelConfig, TrainConfig]:
    """nanoGPT's CPU config (see the top of this file) as our configs."""
    model = ModelConfig(
        vocab_size=vocab_size,
        block_size=64,
        n_layer=4,
        n_head=4,
        n_embd=128,
        dropout=0.0,
        position="learned",
        norm="layer",
        bias=True,
    )
    training = TrainConfig(
        batch_size=12,
        learning_rate=1e-3,
        min_lr_ratio=0.1,
        warmup_steps=100,
        weight_decay=0.1,
        beta1=0.9,
        beta2=0.99,
        grad_clip=1.0,
        dtype=dtype,
    )
    return model, training


def corpus_texts(name: str) -> list[str]:
    """The documents of one benchmark corpus, in a stable order."""
    if name == "builtin":
        from llm_pipeline.text.read.builtin import iter_stdlib_docstrings

        seen: set[str] = set()
        texts = []
        for record in iter_stdlib_docstrings():
            text = record["text"].strip()
            if len(text) >= 20 and text not in seen:
                seen.add(text)
                texts.append(text)
        return texts
    if name == "prose":
        from pydoc_data.topics import topics

        texts = []
        for key in sorted(topics):
            for paragraph in re.split(r"\n\s*\n", topics[key]):
                paragraph = paragraph.strip()
                if len(paragraph) >= 20:
                    texts.append(paragraph)
        return texts
    raise SystemExit(f"unknown corpus {name!r}: use builtin or prose")


def build_shards(name: str, vocab_size: int) -> Path:
    """Tokenizer + train/val shards of a benchmark corpus (built once, then reused)."""
    texts = corpus_texts(name)
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12]
    out = WORK / f"{name}-v{CORPUS_VERSION}-{vocab_size}-{digest}"
    if (out / "meta.json").is_file():
        return out
    keys = np.fromiter((split_key(t) for t in texts), np.uint64, len(texts))
    sizes = np.asarray([len(t.encode()) for t in texts])
    is_val, _ = assign_sides(keys, sizes, np.arange(len(texts)), 0.05, 20)
    train_texts = [t for t, v in zip(texts, is_val) if not v]
    bpe = train_bpe([train_texts], vocab_size=vocab_size)  # the train side only, as the pipeline
    out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(bpe, out / "tokenizer.json")
    write_shards(bpe, [(texts, sizes, is_val)], out, end_of_text_id(bpe))
    return out


def pipeline_defaults(vocab_size: int) -> tuple[ModelConfig, TrainConfig]:
    """The `trained_model` asset's default model and training configs for `vocab_size`."""
    defaults = TrainedModelSettings.resolve({"vocab_size": vocab_size})
    return defaults, defaults


@dataclass
class Scored:
    """One training run and its validation score."""

    label: str
    model_config: ModelConfig
    train_config: TrainConfig
    parameters: int
    steps: int
    tokens: int
    seconds: float
    dtype: str
    val_bpb: float
    others: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def train_and_score(
    label: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    shards: Path,
    max_wait: float = 60.0,
) -> Scored:
    """Train with the pipeline's loop, then bits per byte over the whole validation split.

    Waits (up to `max_wait` s) for a quiet machine first, and records how many CPUs other
    processes kept busy during training.
    """
    wait_for_quiet(max_wait)
    with OtherLoad() as load:
        result = train(model_config, train_config, shards)
    if result.stop_reason == "diverged":
        val_bpb = float("nan")
    else:
        device = next(result.model.parameters()).device
        ids, byte_lengths = _val_layout(shards)
        val_bpb = score_documents(
            result.model, ids, byte_lengths, model_config.block_size, device=device
        ).bits_per_byte
    return Scored(
        label=label,
        model_config=model_config,
        train_config=train_config,
        parameters=count_parameters(result.model),
        steps=result.steps,
        tokens=result.tokens_seen,
        seconds=result.seconds,
        dtype=result.dtype,
        val_bpb=val_bpb,
        others=load.cpus,
    )


def matched_gru(gpt: ModelConfig, n_layer: int) -> ModelConfig:
    """A GRU of `n_layer` layers whose width (a multiple of 8) best matches the GPT's size."""
    target = count_parameters(build_model(gpt))

    def size(width: int) -> int:
        config = replace(gpt, architecture="gru", n_layer=n_layer, n_embd=width)
        return count_parameters(build_model(config))

    width = min(range(8, 4 * gpt.n_embd + 1, 8), key=lambda w: abs(size(w) - target))
    return replace(gpt, architecture="gru", n_layer=n_layer, n_embd=width)


def describe(config: ModelConfig) -> str:
    if config.architecture == "gru":
        return f"gru n_layer={config.n_layer} n_embd={config.n_embd}"
    return (
        f"gpt n_layer={config.n_layer} n_head={config.n_head} n_embd={config.n_embd} "
        f"block={config.block_size} position={config.position} norm={config.norm} "
        f"bias={config.bias} mlp={config.mlp}"
    )


def describe_training(config: TrainConfig) -> str:
    return (
        f"batch {config.batch_size}, lr {config.learning_rate:g}, warm-up {config.warmup_steps}, "
        f"min lr ×{config.min_lr_ratio:g}, β2 {config.beta2:g}, dtype {config.dtype}"
    )


HEADER = (
    f"{'run':<10}{'params':>10}{'budget s':>9}{'steps':>7}{'tokens':>10}{'tok/s':>8}"
    f"{'dtype':>9}{'others':>8}{'val bpb':>9}"
)


def row(scored: Scored) -> str:
    return (
        f"{scored.label:<10}{scored.parameters:>10,}{scored.train_config.max_seconds:>9.0f}"
        f"{scored.steps:>7}{scored.tokens:>10,}{scored.tokens_per_s:>8,.0f}"
        f"{scored.dtype:>9}{scored.others:>8.2f}{scored.val_bpb:>9.4f}"
    )


def run_corpus(label: str, shards: Path, args: argparse.Namespace) -> dict[str, Scored]:
    """Train and score every contender on one shard folder; print the table and verdict."""
    meta = read_meta(shards)
    vocab = meta["vocab_size"]
    ours, ours_training = pipeline_defaults(vocab)
    dtype = args.dtype or ours_training.dtype
    budget = {"max_steps": 0, "max_tokens": 0, "max_seconds": args.seconds, "dtype": dtype}
    ours_training = replace(ours_training, measure_mfu=False, **budget)
    baseline, baseline_training = nanogpt_baseline(vocab, dtype)
    baseline_training = baseline_training.replace(**budget)
    contenders = {"ours": (ours, ours_training), "nanogpt": (baseline, baseline_training)}
    if args.gru:
        contenders["gru"] = (matched_gru(ours, 1), ours_training)
    if args.mlp:  # ours with the other feed-forward block, same everything else
        other = "swiglu" if ours.mlp == "gelu" else "gelu"
        contenders[other] = (replace(ours, mlp=other), ours_training)
    val_tokens, val_bytes = meta["splits"]["val"]["tokens"], meta["splits"]["val"]["bytes"]
    ids, byte_lengths = _val_layout(shards)
    unigram = unigram_score(np.asarray(open_split(shards, "train")), ids, byte_lengths)
    print(
        f"\n== {label}: {shards}\n   train {meta['splits']['train']['tokens']:,} tokens, "
        f"val {val_tokens:,} tokens / {val_bytes:,} bytes, vocab {vocab}; "
        f"unigram floor {unigram:.4f} bits/byte"
    )
    for name, (model, training) in contenders.items():
        print(f"   {name:<8} {describe(model)}; {describe_training(training)}")
    print("\n" + HEADER)
    results: dict[str, Scored] = {}
    for name, (model, training) in contenders.items():
        results[name] = train_and_score(name, model, training, shards, args.max_wait)
        print(row(results[name]), flush=True)
    for seconds in sorted({float(b) for b in args.curve.split(",") if b.strip()}):
        if seconds != args.seconds:
            scored = train_and_score(
                "ours", ours, replace(ours_training, max_seconds=seconds), shards, args.max_wait
            )
            print(row(scored), flush=True)
    mine, theirs = results["ours"].val_bpb, results["nanogpt"].val_bpb
    print(
        f"\n   at {args.seconds:g} s: ours {mine:.4f} bits/byte, nanogpt {theirs:.4f}, "
        f"unigram {unigram:.4f}; ours - nanogpt = {mine - theirs:+.4f} "
        f"({mine / theirs:.3f}×): {'ours lower' if mine < theirs else 'NOT lower'}"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--corpora", default="builtin,prose", help="comma-separated corpora")
    parser.add_argument("--shards", help="one existing token shard folder instead")
    parser.add_argument("--seconds", type=float, default=90.0, help="training budget per model")
    parser.add_argument("--vocab", type=int, default=4096, help="BPE vocabulary of the corpora")
    parser.add_argument("--gru", action="store_true", help="also train a size-matched GRU")
    parser.add_argument(
        "--mlp", action="store_true", help="also train ours with the other MLP (gelu/swiglu)"
    )
    parser.add_argument("--curve", default="", help="extra budgets (s) for ours, e.g. 30,60")
    parser.add_argument(
        "--dtype", choices=("auto", "bf16", "fp32"), help="default: the trained_model default"
    )
    parser.add_argument(
        "--max-wait", type=float, default=60.0, help="seconds to wait for a quiet machine per run"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: PyTorch's default)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"quality benchmark: {torch.get_num_threads()} threads on {os.cpu_count()} CPUs")
    if args.shards:
        folders = {"shards": find_shards(args.shards)}
    else:
        names = [n.strip() for n in args.corpora.split(",") if n.strip()]
        folders = {name: build_shards(name, args.vocab) for name in names}
    verdicts = {}
    for label, shards in folders.items():
        results = run_corpus(label, shards, args)
        verdicts[label] = (results["ours"].val_bpb, results["nanogpt"].val_bpb)
    print("\nsummary: val bits/byte at equal wall-clock (lower is better)")
    for label, (mine, theirs) in verdicts.items():
        verdict = "ours lower" if mine < theirs else "NOT lower"
        print(f"  {label:<10} ours {mine:.4f}   nanogpt {theirs:.4f}   {verdict}")


if __name__ == "__main__":
    main()
