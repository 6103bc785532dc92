"""Checks on `trained_model`: the numbers are sane and the checkpoint really works."""

import math

import torch
from dagster import AssetCheckExecutionContext, AssetCheckResult, asset_check

from llm_pipeline.assets.model import trained_model
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.lm.model.sampling import complete, load_run
from llm_pipeline.lm.store.checkpoint import read_config, read_metrics
from llm_pipeline.lm.store.checkpoint_config import TrainingSummary
from llm_pipeline.lm.store.folders import LATEST, read_pointer, run_dir
from llm_pipeline.partitions import corpus_key
from llm_pipeline.resources import StorageResource
from llm_pipeline.text.funnel import read_cleaning
from llm_pipeline.tokens.shards import read_meta


def _latest_run(context: AssetCheckExecutionContext, storage: StorageResource):
    corpus = corpus_key(context.op_execution_context)
    run_id = read_pointer(corpus, LATEST, storage.models_root())
    if run_id is None:
        raise PipelineInputError(f"corpus {corpus!r}: no trained model yet")
    return run_dir(corpus, run_id, storage.models_root())


@asset_check(asset=trained_model, blocking=True)
def losses_finite(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """Every logged train and validation loss is a finite number."""
    folder = _latest_run(context, storage)
    rows = read_metrics(folder)
    values = [v for r in rows for v in (r["train_loss"], r["val_loss"]) if v is not None]
    bad = [v for v in values if not math.isfinite(v)]
    passed = bool(values) and not bad
    description = None
    if not values:
        description = f"no losses were logged in {folder}; the run ended before its first log row"
    elif bad:
        training = read_config(folder).training
        description = (
            f"{len(bad)} of {len(values)} logged losses are not finite (the run diverged). "
            f"Try: a lower learning_rate (was {training.get('learning_rate', '?')}), more "
            f"warmup_steps (was {training.get('warmup_steps', '?')}), or grad_clip if it is off."
        )
    return AssetCheckResult(
        passed=passed,
        description=description,
        metadata={"logged_losses": len(values), "non_finite": len(bad)},
    )


def _cleaning_loss(storage: StorageResource, corpus: str) -> tuple[float, str] | None:
    """(share of the raw bytes cleaning removed, profile), if `cleaning.json` can be read."""
    try:
        data = read_cleaning(storage.cleaned(corpus)) or {}
        stats, profile = data["stats"], str(data["config"]["profile"])
        return 1 - stats["bytes_out"] / max(stats["bytes_in"], 1), profile
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def _baseline_advice(summary: TrainingSummary, storage: StorageResource, corpus: str) -> str:
    """Why a model did not beat the unigram baseline, with its figures and what to try."""
    try:
        splits = read_meta(storage.tokens(corpus))["splits"]
        data = (
            f" on {splits['train']['tokens']:,} train tokens "
            f"({splits['train']['documents']:,} train / {splits['val']['documents']:,} "
            "validation documents)"
        )
    except (OSError, ValueError, KeyError):
        data = ""
    lines = [
        f"validation {summary.val_bits_per_byte:.4f} bits/byte is not below the unigram "
        f"baseline {summary.unigram_bits_per_byte:.4f} after {summary.steps:,} steps and "
        f"{summary.tokens_seen:,} tokens{data} (stopped by {summary.stop_reason}).",
        "Try: more text (add files with `llm-pipeline corpus add`); a longer budget "
        "(trained_model max_steps / max_seconds)",
    ]
    loss = _cleaning_loss(storage, corpus)
    if loss is not None and loss[0] > 0.5:
        lines[-1] += (
            f"; another cleaning profile (profile {loss[1]!r} removed {100 * loss[0]:.0f}% of "
            "the bytes: see the cleaned_corpus warning for the one that keeps them)"
        )
    lines[-1] += "."
    return " ".join(lines)


@asset_check(asset=trained_model, blocking=True)
def beats_unigram_baseline(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """Validation bits per byte is below a unigram model's on the same split: it learned context."""
    folder = _latest_run(context, storage)
    summary = read_config(folder).require_summary(folder)
    model_bpb, unigram_bpb = summary.val_bits_per_byte, summary.unigram_bits_per_byte
    passed = model_bpb < unigram_bpb
    corpus = corpus_key(context.op_execution_context)
    return AssetCheckResult(
        passed=passed,
        description=None if passed else _baseline_advice(summary, storage, corpus),
        metadata={
            "val_bits_per_byte": round(model_bpb, 4),
            "unigram_bits_per_byte": round(unigram_bpb, 4),
            "margin": round(unigram_bpb - model_bpb, 4),
        },
    )


@asset_check(asset=trained_model, blocking=True)
def checkpoint_loads_and_generates(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """The saved folder loads through safetensors and produces text from a prompt."""
    run = load_run(_latest_run(context, storage))
    generator = torch.Generator().manual_seed(0)
    text = complete(run, "The", 24, 0.8, 40, generator, stop_at_end_of_text=False)
    passed = bool(text.strip())
    return AssetCheckResult(
        passed=passed,
        description=None
        if passed
        else "the model generated only whitespace from the prompt 'The' (24 tokens); "
        "train longer or on more text",
        metadata={"sample": text[:200]},
    )
