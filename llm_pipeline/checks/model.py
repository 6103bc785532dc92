"""Checks on `trained_model`: the numbers are sane and the checkpoint really works.

The checks themselves are core (`lm/model_checks.py`); these are their Dagster faces, shown in
the UI. They are not blocking: the report still runs for a model that fails one (it says so at
the top, with what to try), and the report's promotion refuses such a model itself, so a
failed model is never promoted without depending on Dagster's step order.
"""

from dagster import AssetCheckExecutionContext, AssetCheckResult, asset_check

from llm_pipeline.assets.model import trained_model
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.lm import model_checks
from llm_pipeline.lm.model.sampling import load_run
from llm_pipeline.lm.store.checkpoint import read_config
from llm_pipeline.lm.store.checkpoint_config import TrainingSummary
from llm_pipeline.lm.store.folders import LATEST, read_pointer, run_dir
from llm_pipeline.partitions import corpus_key
from llm_pipeline.resources import StorageResource


def _latest_run(context: AssetCheckExecutionContext, storage: StorageResource):
    corpus = corpus_key(context.op_execution_context)
    run_id = read_pointer(corpus, LATEST, storage.models_root())
    if run_id is None:
        raise PipelineInputError(f"corpus {corpus!r}: no trained model yet")
    return run_dir(corpus, run_id, storage.models_root())


def _result(check: model_checks.ModelCheck) -> AssetCheckResult:
    return AssetCheckResult(
        passed=check.passed, description=check.description, metadata=check.metadata
    )


def _baseline_advice(summary: TrainingSummary, storage: StorageResource, corpus: str) -> str:
    """Why a model did not beat the unigram baseline, with its figures and what to try."""
    return model_checks.baseline_advice(summary, storage.tokens(corpus), storage.cleaned(corpus))


@asset_check(asset=trained_model)
def losses_finite(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """Every logged train and validation loss is a finite number."""
    return _result(model_checks.losses_finite(_latest_run(context, storage)))


@asset_check(asset=trained_model)
def beats_unigram_baseline(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """Validation bits per byte is below a unigram model's on the same split: it learned context."""
    folder = _latest_run(context, storage)
    summary = read_config(folder).require_summary(folder)
    corpus = corpus_key(context.op_execution_context)
    advice = lambda: _baseline_advice(summary, storage, corpus)  # noqa: E731
    return _result(model_checks.beats_unigram_baseline(summary, advice))


@asset_check(asset=trained_model)
def checkpoint_loads_and_generates(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """The saved folder loads through safetensors and produces text from a prompt."""
    return _result(model_checks.loads_and_generates(load_run(_latest_run(context, storage))))
