"""`evaluation_report`: metrics, plots, samples, and the champion/challenger decision."""

import json
import math
from dataclasses import asdict
from pathlib import Path

import pyarrow.parquet as pq
import torch
from dagster import (
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from llm_pipeline.assets._common import GROUP_MODEL, check_run_config
from llm_pipeline.assets._config import stage_config
from llm_pipeline.assets.cleaned import CLEANING_FILE
from llm_pipeline.assets.model import trained_model
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.lm.checkpoint import read_metrics
from llm_pipeline.lm.evaluate import text_bits_per_byte, texts_bits_per_byte
from llm_pipeline.lm.history import model_history, record_promotion
from llm_pipeline.lm.registry import CURRENT, LATEST, read_pointer, run_dir, write_pointer
from llm_pipeline.lm.sampling import complete, load_run
from llm_pipeline.partitions import corpus_key, corpus_partitions
from llm_pipeline.paths import within_root
from llm_pipeline.report.content import HISTORY_IMAGE
from llm_pipeline.report.plots import model_history_png
from llm_pipeline.report.promotion import champion_to_score, decide_promotion
from llm_pipeline.report.render import ReportInputs, write_report
from llm_pipeline.report.settings import EVALUATION_REPORT
from llm_pipeline.resources import StorageResource
from llm_pipeline.text.store import parquet_parts
from llm_pipeline.tokens.shards import read_meta, split_hash

EvaluationReportConfig = stage_config(EVALUATION_REPORT)


def validation_texts(cleaned: Path, threshold: int, max_bytes: int) -> list[str]:
    """The validation documents (same split as the shards), up to `max_bytes` of text."""
    texts: list[str] = []
    total = 0
    for part in parquet_parts(cleaned):
        for batch in pq.ParquetFile(part, pre_buffer=False).iter_batches(
            columns=["doc_id", "text"]
        ):
            for doc_id, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                if split_hash(doc_id) <= threshold:
                    texts.append(text)
                    total += len(text.encode("utf-8"))
                    if total >= max_bytes:
                        return texts
    return texts


def read_cleaning_stats(cleaned: Path) -> dict | None:
    """The cleaning funnel stats of the corpus's current cleaned data, or None if the cleaned
    corpus predates them or cannot be read (the report is still worth having without them)."""
    try:
        stats = json.loads((cleaned / CLEANING_FILE).read_text())["stats"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return stats if isinstance(stats, dict) and isinstance(stats.get("funnel"), list) else None


def _score_on(path: Path, texts: list[str]) -> float:
    run = load_run(path)
    return texts_bits_per_byte(
        run.model, run.tokenizer, texts, run.eot_id, run.model.config.block_size
    )


def _history_after(corpus: str, models_root: Path, run_id: str, promoted: bool) -> list[dict]:
    """Every model of the corpus as the report shows it: with the champion as it stands once
    this run's promotion decision is applied."""
    champion = run_id if promoted else read_pointer(corpus, CURRENT, models_root)
    return [
        {
            **asdict(r),
            "champion": r.run_id == champion,
            "promoted": r.promoted or (r.run_id == run_id and promoted),
        }
        for r in model_history(corpus, models_root)
    ]


@asset(
    partitions_def=corpus_partitions,
    deps=[trained_model],
    group_name=GROUP_MODEL,
    kinds={"html"},
    code_version="1",
)
def evaluation_report(
    context: AssetExecutionContext, config: EvaluationReportConfig, storage: StorageResource
) -> MaterializeResult:
    """Validation loss, perplexity and bits per byte, fixed eval files, loss and LR plots,
    samples, and promotion of the new model to `models/<corpus>/current` if it is no worse than
    the champion on the same validation text. Written as report.md and report.html."""
    check_run_config(context)
    corpus = corpus_key(context)
    models_root = storage.models_root()
    run_id = read_pointer(corpus, LATEST, models_root)
    if run_id is None:
        raise Failure(description=f"corpus {corpus!r}: no trained model; materialize trained_model")
    path = run_dir(corpus, run_id, models_root)
    try:
        run = load_run(path)
        history = read_metrics(path)
    except PipelineInputError as exc:
        raise Failure(description=str(exc)) from None
    model, bpe, eot, checkpoint = run.model, run.tokenizer, run.eot_id, run.config
    summary = checkpoint.require_summary(path)
    block_size = model.config.block_size

    eval_files: dict[str, float] = {}
    for name in config.eval_files:
        try:
            file = within_root(storage.data_root(), name)
        except PipelineInputError as exc:
            raise Failure(description=f"eval file {name!r}: {exc}") from None
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise Failure(
                description=f"eval file {file}: cannot be read as UTF-8 ({exc})"
            ) from None
        if not text:
            raise Failure(description=f"eval file {file}: empty")
        eval_files[file.name] = text_bits_per_byte(model, bpe, text, eot, block_size)

    generator = torch.Generator().manual_seed(config.seed)
    samples = [
        {
            "prompt": prompt,
            "completion": complete(
                run, prompt, config.max_new_tokens, config.temperature, config.top_k, generator
            ),
            "temperature": config.temperature,
            "top_k": config.top_k or None,
        }
        for prompt in config.prompts
    ]

    meta = read_meta(storage.tokens(corpus))
    texts = validation_texts(
        storage.cleaned(corpus), meta["validation_threshold"], config.compare_max_bytes
    )
    challenger_bpb = texts_bits_per_byte(model, bpe, texts, eot, block_size)
    champion_id = champion_to_score(read_pointer(corpus, CURRENT, models_root), run_id)
    champion_bpb = None
    if champion_id is not None:
        try:
            champion_bpb = _score_on(run_dir(corpus, champion_id, models_root), texts)
        except PipelineInputError as exc:
            context.log.warning(f"champion {champion_id} cannot be evaluated: {exc}")
    decision = decide_promotion(run_id, challenger_bpb, champion_id, champion_bpb)
    promoted, reason, champion_id = decision.promoted, decision.reason, decision.champion_run
    comparison = decision.as_comparison()

    val_loss = summary.val_loss
    metrics = {
        "bits_per_byte": summary.val_bits_per_byte,
        "unigram_bits_per_byte": summary.unigram_bits_per_byte,
        "val_loss": val_loss,
        "perplexity": math.exp(min(val_loss, 50.0)),
        "tokens_seen": summary.tokens_seen,
        "parameters": summary.parameters,
        "training_seconds": summary.training_seconds,
        "tokens_per_s": summary.tokens_per_s,
        "architecture": checkpoint.model["architecture"],
        "steps": summary.steps,
        "stop_reason": summary.stop_reason,
    }
    inputs = ReportInputs(
        title=f"{corpus} — run {run_id}",
        metrics=metrics,
        eval_files=eval_files,
        history=history,
        samples=samples,
        comparison=comparison,
        cleaning=read_cleaning_stats(storage.cleaned(corpus)),
        models=_history_after(corpus, models_root, run_id, promoted),
    )
    inputs.extra_images[HISTORY_IMAGE] = model_history_png(inputs.models, run_id)
    record_promotion(path, comparison)
    written = write_report(path, inputs)
    if promoted:
        write_pointer(corpus, CURRENT, run_id, models_root)
    context.log.info(
        f"report: {written['html_path']} — {metrics['bits_per_byte']:.4f} bits/byte; "
        f"{'promoted' if promoted else 'not promoted'} ({reason})"
    )
    return MaterializeResult(
        metadata={
            "bits_per_byte": round(metrics["bits_per_byte"], 4),
            "val_loss": round(val_loss, 4),
            "perplexity": round(metrics["perplexity"], 2),
            "architecture": metrics["architecture"],
            "parameters": metrics["parameters"],
            "tokens_seen": metrics["tokens_seen"],
            "promoted": promoted,
            "champion_run": champion_id or "",
            "champion_bits_per_byte": round(champion_bpb, 4) if champion_bpb else None,
            "challenger_bits_per_byte": round(challenger_bpb, 4),
            **{f"eval_bpb_{name}": round(v, 4) for name, v in eval_files.items()},
            "report": MetadataValue.md(written["metadata_markdown"]),
            "path": MetadataValue.path(str(written["html_path"])),
        }
    )
