"""Checks on `trained_model`: the numbers are sane and the checkpoint really works."""

import math

import torch
from dagster import AssetCheckExecutionContext, AssetCheckResult, asset_check

from llm_pipeline.assets.model import trained_model
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.lm.checkpoint import read_config, read_metrics
from llm_pipeline.lm.registry import LATEST, read_pointer, run_dir
from llm_pipeline.lm.sampling import complete, load_run
from llm_pipeline.partitions import corpus_key
from llm_pipeline.resources import StorageResource


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
    rows = read_metrics(_latest_run(context, storage))
    values = [v for r in rows for v in (r["train_loss"], r["val_loss"]) if v is not None]
    bad = [v for v in values if not math.isfinite(v)]
    return AssetCheckResult(
        passed=bool(values) and not bad,
        metadata={"logged_losses": len(values), "non_finite": len(bad)},
    )


@asset_check(asset=trained_model, blocking=True)
def beats_unigram_baseline(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """Validation bits per byte is below a unigram model's on the same split: it learned context."""
    folder = _latest_run(context, storage)
    summary = read_config(folder).require_summary(folder)
    model_bpb, unigram_bpb = summary.val_bits_per_byte, summary.unigram_bits_per_byte
    return AssetCheckResult(
        passed=model_bpb < unigram_bpb,
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
    return AssetCheckResult(
        passed=bool(text.strip()),
        metadata={"sample": text[:200]},
    )
