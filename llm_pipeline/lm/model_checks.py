"""The checks on a trained model, without Dagster: its losses are finite, it beats a unigram
model on the same validation text, and its checkpoint loads and writes text.

Two callers run them: the `trained_model` asset checks (checks/model.py, what the UI shows) and
the report (report/evaluation.py), which must not depend on the order Dagster runs the check
steps in. So a model that fails one still gets its report — marked at the top with the failed
checks and what to try — and the report's promotion refuses it: a failed model is never
promoted, whichever way the report was reached.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llm_pipeline.lm.model.sampling import LoadedRun, complete
from llm_pipeline.lm.store.checkpoint import read_config, read_metrics
from llm_pipeline.lm.store.checkpoint_config import TrainingSummary
from llm_pipeline.text.funnel import read_cleaning
from llm_pipeline.tokens.shards import read_meta


@dataclass(frozen=True)
class ModelCheck:
    """One check's outcome: its name, whether it passed, why not (with what to try), figures."""

    name: str
    passed: bool
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def losses_finite(folder: Path) -> ModelCheck:
    """Every logged train and validation loss is a finite number."""
    rows = read_metrics(folder)
    values = [v for r in rows for v in (r["train_loss"], r["val_loss"]) if v is not None]
    bad = [v for v in values if not math.isfinite(v)]
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
    metadata = {"logged_losses": len(values), "non_finite": len(bad)}
    return ModelCheck("losses_finite", bool(values) and not bad, description, metadata)


def _cleaning_loss(cleaned: Path) -> tuple[float, str] | None:
    """(share of the raw bytes cleaning removed, profile), if `cleaning.json` can be read."""
    try:
        data = read_cleaning(cleaned) or {}
        stats, profile = data["stats"], str(data["config"]["profile"])
        return 1 - stats["bytes_out"] / max(stats["bytes_in"], 1), profile
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def baseline_advice(summary: TrainingSummary, tokens: Path, cleaned: Path) -> str:
    """Why a model did not beat the unigram baseline, with its figures and what to try."""
    try:
        splits = read_meta(tokens)["splits"]
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
    loss = _cleaning_loss(cleaned)
    if loss is not None and loss[0] > 0.5:
        lines[-1] += (
            f"; another cleaning profile (profile {loss[1]!r} removed {100 * loss[0]:.0f}% of "
            "the bytes: see the cleaned_corpus warning for the one that keeps them)"
        )
    lines[-1] += "."
    return " ".join(lines)


def beats_unigram_baseline(summary: TrainingSummary, advice: Callable[[], str]) -> ModelCheck:
    """Validation bits per byte is below a unigram model's on the same split: it learned context."""
    model_bpb, unigram_bpb = summary.val_bits_per_byte, summary.unigram_bits_per_byte
    passed = model_bpb < unigram_bpb
    metadata = {
        "val_bits_per_byte": round(model_bpb, 4),
        "unigram_bits_per_byte": round(unigram_bpb, 4),
        "margin": round(unigram_bpb - model_bpb, 4),
    }
    return ModelCheck("beats_unigram_baseline", passed, None if passed else advice(), metadata)


def loads_and_generates(run: LoadedRun) -> ModelCheck:
    """The saved folder loads through safetensors and produces text from a prompt."""
    generator = torch.Generator().manual_seed(0)
    text = complete(run, "The", 24, 0.8, 40, generator, stop_at_end_of_text=False)
    passed = bool(text.strip())
    description = (
        None
        if passed
        else "the model generated only whitespace from the prompt 'The' (24 tokens); "
        "train longer or on more text"
    )
    return ModelCheck("checkpoint_loads_and_generates", passed, description, {"sample": text[:200]})


def run_model_checks(run: LoadedRun, tokens: Path, cleaned: Path) -> list[ModelCheck]:
    """Every check on a loaded run (`tokens`, `cleaned`: the corpus's folders, for advice)."""
    summary = run.config.require_summary(run.path)
    return [
        losses_finite(run.path),
        beats_unigram_baseline(summary, lambda: baseline_advice(summary, tokens, cleaned)),
        loads_and_generates(run),
    ]
