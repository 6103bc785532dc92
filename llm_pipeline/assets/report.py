"""`evaluation_report`: metrics, plots, samples, and the champion/challenger decision."""

import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
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
from llm_pipeline.assets.model import trained_model
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.lm.checkpoint import read_config, read_metrics
from llm_pipeline.lm.checkpoint_config import TrainingSummary
from llm_pipeline.lm.evaluate import text_bits_per_byte, texts_bits_per_byte
from llm_pipeline.lm.history import model_history, record_promotion
from llm_pipeline.lm.registry import CURRENT, LATEST, read_pointer, run_dir, write_pointer
from llm_pipeline.lm.sampling import complete, load_run
from llm_pipeline.lm.tracking_promotion import record_report
from llm_pipeline.partitions import corpus_key, corpus_partitions
from llm_pipeline.paths import within_root
from llm_pipeline.report.content import HISTORY_IMAGE
from llm_pipeline.report.plots import model_history_png
from llm_pipeline.report.promotion import (
    NO_FAIR_TEXT,
    RESCORE,
    SHARED,
    STORED,
    PromotionDecision,
    ScoredRun,
    SharedText,
    champion_to_score,
    decide_promotion,
    no_fair_comparison,
    plan_comparison,
    same_validation_set,
)
from llm_pipeline.report.render import ReportInputs, write_report
from llm_pipeline.report.settings import EVALUATION_REPORT
from llm_pipeline.resources import StorageResource
from llm_pipeline.safe_open import UnsafeFileError, read_utf8
from llm_pipeline.text.funnel import read_cleaning
from llm_pipeline.text.split_file import SplitFileError, read_split_file
from llm_pipeline.text.store import parquet_parts
from llm_pipeline.text.validation_keys import (
    VALIDATION_KEYS_FILE,
    read_validation_keys,
    shared_validation_texts,
)
from llm_pipeline.tokens.shards import iter_split_batches

EvaluationReportConfig = stage_config(EVALUATION_REPORT)


def validation_texts(cleaned: Path, documents: int) -> list[str]:
    """The first `documents` validation documents in table order: the ones `val.bin` starts
    with, so the trainer's stored score and a re-score here are on the same text."""
    texts: list[str] = []
    for texts_batch, _, _ in iter_split_batches(parquet_parts(cleaned), side="val"):
        texts.extend(texts_batch[: documents - len(texts)])
        if len(texts) >= documents:
            break
    return texts


def read_split_info(cleaned: Path) -> dict | None:
    """`split.json` of the cleaned corpus (sides, rule, leakage) as the report shows it, or
    None when it is absent or unreadable (the report is still worth having without it)."""
    try:
        return read_split_file(cleaned).to_dict()
    except SplitFileError:
        return None


def read_cleaning_stats(cleaned: Path) -> dict | None:
    """The cleaning funnel stats of the corpus's current cleaned data, or None if the cleaned
    corpus predates them or cannot be read (the report is still worth having without them)."""
    stats = (read_cleaning(cleaned) or {}).get("stats")
    return stats if isinstance(stats, dict) and isinstance(stats.get("funnel"), list) else None


def _score_on(path: Path, texts: list[str]) -> float:
    run = load_run(path)
    return texts_bits_per_byte(
        run.model, run.tokenizer, texts, run.eot_id, run.model.config.block_size
    )


def _scored_run(run_id: str, summary: TrainingSummary | None) -> ScoredRun:
    if summary is None:
        return ScoredRun(run_id, None, None)
    vset = summary.validation_set
    return ScoredRun(run_id, summary.val_bits_per_byte, asdict(vset) if vset else None)


def shared_texts(
    cleaned: Path, challenger: ScoredRun, path: Path, champion: ScoredRun, champion_path: Path
) -> tuple[list[str], SharedText | None]:
    """The current validation documents in both models' validation sets (keys kept with each
    checkpoint), up to as many bytes as the challenger's own score covered; None when either
    model's keys are unknown."""
    mine = read_validation_keys(path / VALIDATION_KEYS_FILE, challenger.validation_set)
    theirs = read_validation_keys(champion_path / VALIDATION_KEYS_FILE, champion.validation_set)
    if mine is None or theirs is None:
        return [], None
    # `mine` is not None: the challenger has a recorded validation set, with its scored bytes.
    budget = int(challenger.validation_set["bytes"])
    texts, size = shared_validation_texts(
        parquet_parts(cleaned), np.intersect1d(mine, theirs), budget
    )
    return texts, SharedText(len(texts), size)


def _compare(
    context, storage: StorageResource, corpus: str, path: Path, challenger: ScoredRun,
    champion_id: str | None, eval_texts: list[str],
) -> PromotionDecision:  # fmt: skip
    """The champion/challenger decision on text neither model trained on (report/promotion.py);
    models are run again only when the stored scores are not on the same documents."""
    bpb = challenger.bits_per_byte or 0.0
    if champion_id is None:
        return decide_promotion(challenger.run_id, bpb, None, None)
    champion_path = run_dir(corpus, champion_id, storage.models_root())
    try:
        champion_config = read_config(champion_path)
    except PipelineInputError as exc:
        context.log.warning(f"champion {champion_id} cannot be evaluated: {exc}")
        return decide_promotion(challenger.run_id, bpb, champion_id, None)
    champion = _scored_run(champion_id, champion_config.summary)
    shared, common = [], None
    if not same_validation_set(challenger.validation_set, champion.validation_set):
        shared, common = shared_texts(storage.cleaned(corpus), challenger, path, champion,
                                      champion_path)  # fmt: skip
    plan = plan_comparison(challenger, champion, bool(eval_texts), common)
    if plan.how == NO_FAIR_TEXT:
        return no_fair_comparison(challenger, champion_id, plan)
    if plan.how == STORED:
        return decide_promotion(challenger.run_id, bpb, champion_id, champion.bits_per_byte,
                                plan.text)  # fmt: skip
    texts = eval_texts
    if plan.how == RESCORE:
        texts = validation_texts(storage.cleaned(corpus), plan.documents)
    elif plan.how == SHARED:
        texts = shared
    try:
        champion_bpb = _score_on(champion_path, texts)
    except PipelineInputError as exc:
        context.log.warning(f"champion {champion_id} cannot be evaluated: {exc}")
        champion_bpb = None
    decision = decide_promotion(challenger.run_id, _score_on(path, texts), champion_id,
                                champion_bpb, plan.text)  # fmt: skip
    return replace(decision, like_for_like=plan.like_for_like)


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
    eval_texts: list[str] = []
    for name in config.eval_files:
        try:
            file = within_root(storage.data_root(), name)
        except PipelineInputError as exc:
            raise Failure(description=f"eval file {name!r}: {exc}") from None
        try:  # a regular file only, streamed: a FIFO is refused, never waited on
            text = read_utf8(file, storage.data_root())
        except UnsafeFileError as exc:
            raise Failure(
                description=f"eval file {file}: {exc.reason}; only regular files"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise Failure(
                description=f"eval file {file}: cannot be read as UTF-8 ({exc})"
            ) from None
        if not text:
            raise Failure(description=f"eval file {file}: empty")
        eval_files[file.name] = text_bits_per_byte(model, bpe, text, eot, block_size)
        eval_texts.append(text)

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

    challenger = _scored_run(run_id, summary)
    champion_id = champion_to_score(read_pointer(corpus, CURRENT, models_root), run_id)
    decision = _compare(context, storage, corpus, path, challenger, champion_id, eval_texts)
    promoted, reason, champion_id = decision.promoted, decision.reason, decision.champion_run
    comparison = decision.as_comparison()
    champion_bpb, challenger_bpb = decision.champion_bpb, decision.challenger_bpb

    val_loss = summary.val_loss
    metrics = {
        "bits_per_byte": summary.val_bits_per_byte,
        "bits_per_byte_stderr": summary.val_bits_per_byte_stderr,
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
        split=read_split_info(storage.cleaned(corpus)),
        models=_history_after(corpus, models_root, run_id, promoted),
    )
    inputs.extra_images[HISTORY_IMAGE] = model_history_png(inputs.models, run_id)
    record_promotion(path, {**comparison, "eval_files": eval_files})
    written = write_report(path, inputs)
    # MLflow first: if it fails, the step fails before `current` moves, so both still agree.
    scores = {f"eval_bpb_{name}": v for name, v in eval_files.items()}
    scores["challenger_bits_per_byte"] = challenger_bpb
    try:
        tracked = record_report(corpus, run_id, path, scores, promoted)
    except PipelineInputError as exc:
        raise Failure(description=str(exc)) from None
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
            "compared_on": decision.compared_on,
            "like_for_like": decision.like_for_like,
            **{f"eval_bpb_{name}": round(v, 4) for name, v in eval_files.items()},
            **tracked,
            "report": MetadataValue.md(written["metadata_markdown"]),
            "path": MetadataValue.path(str(written["html_path"])),
        }
    )
