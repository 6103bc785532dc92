"""`evaluation_report`: metrics, plots, samples, and the champion/challenger decision."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from llm_pipeline.assets._common import check_run_config, clear_errors
from llm_pipeline.assets._config import stage_config
from llm_pipeline.assets.model import trained_model
from llm_pipeline.partitions import corpus_key, corpus_partitions
from llm_pipeline.report.evaluation import (
    Evaluation,
    PublishedReport,
    evaluate_run,
    publish_evaluation,
)
from llm_pipeline.report.settings import EVALUATION_REPORT
from llm_pipeline.resources import StorageResource
from llm_pipeline.tags import GROUP_MODEL

EvaluationReportConfig = stage_config(EVALUATION_REPORT)


def report_metadata(evaluation: Evaluation, published: PublishedReport) -> dict:
    """The materialization's metadata: the run's scores, the promotion decision, the report."""
    metrics, decision = evaluation.metrics, evaluation.decision
    champion_bpb = decision.champion_bpb
    return {
        "bits_per_byte": round(metrics["bits_per_byte"], 4),
        "val_loss": round(metrics["val_loss"], 4),
        "perplexity": round(metrics["perplexity"], 2),
        "architecture": metrics["architecture"],
        "parameters": metrics["parameters"],
        "tokens_seen": metrics["tokens_seen"],
        "promoted": decision.promoted,
        "champion_run": decision.champion_run or "",
        "champion_bits_per_byte": round(champion_bpb, 4) if champion_bpb else None,
        "challenger_bits_per_byte": round(decision.challenger_bpb, 4),
        "compared_on": decision.compared_on,
        "like_for_like": decision.like_for_like,
        "failed_checks": ", ".join(evaluation.inputs.failed_checks) or "none",
        "comparison_notes": " ".join(decision.notes) or "none",
        **{f"eval_bpb_{name}": round(v, 4) for name, v in evaluation.eval_files.items()},
        **published.tracked,
        "report": MetadataValue.md(published.written["metadata_markdown"]),
        "path": MetadataValue.path(str(published.written["html_path"])),
    }


@asset(
    partitions_def=corpus_partitions,
    deps=[trained_model],
    group_name=GROUP_MODEL,
    kinds={"html"},
    code_version="1",
)
@clear_errors
def evaluation_report(
    context: AssetExecutionContext, config: EvaluationReportConfig, storage: StorageResource
) -> MaterializeResult:
    """Validation loss, perplexity and bits per byte, fixed eval files, loss and LR plots,
    samples, and promotion of the new model to `models/<corpus>/current` if it is no worse than
    the champion on the same validation text. Written as report.md and report.html.
    The stage is `report.evaluation.evaluate_run` + `publish_evaluation`."""
    check_run_config(context)
    corpus = corpus_key(context)
    settings = config.settings()
    evaluation = evaluate_run(
        corpus, storage.models_root(), storage.data_root(), storage.cleaned(corpus), settings,
        warn=context.log.warning,
    )  # fmt: skip
    published = publish_evaluation(evaluation, storage.models_root())
    decision = evaluation.decision
    context.log.info(
        f"report: {published.written['html_path']} — "
        f"{evaluation.metrics['bits_per_byte']:.4f} bits/byte; "
        f"{'promoted' if decision.promoted else 'not promoted'} ({decision.reason})"
    )
    return MaterializeResult(metadata=report_metadata(evaluation, published))
