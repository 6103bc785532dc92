"""The `evaluation_report` stage without Dagster, in two calls: `evaluate_run` scores a corpus's
latest run (its stored scores, `eval_files`, samples) and decides its promotion against the
champion, writing nothing; `publish_evaluation` writes the report and the decision, records
them in MLflow and moves `current` — in that order, so a tracking failure leaves `current` and
MLflow agreeing.

The asset is a thin shell over the two; a benchmark or a notebook can score a run without
publishing it. Warnings a person should read go to `warn`; an input the stage refuses raises
`PipelineInputError` with the message the run shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from llm_pipeline.errors import PipelineInputError
from llm_pipeline.lm.evaluate import text_bits_per_byte
from llm_pipeline.lm.model.sampling import LoadedRun, complete, load_run
from llm_pipeline.lm.model_checks import run_model_checks
from llm_pipeline.lm.store.checkpoint import read_metrics
from llm_pipeline.lm.store.checkpoint_config import CheckpointConfig, TrainingSummary
from llm_pipeline.lm.store.folders import CURRENT, LATEST, read_pointer, run_dir, write_pointer
from llm_pipeline.lm.store.history import model_history, record_promotion
from llm_pipeline.lm.tracking.records import record_report
from llm_pipeline.paths import tokens_dir, within_root
from llm_pipeline.report.comparison import compare_with_champion, scored_run
from llm_pipeline.report.content import HISTORY_IMAGE
from llm_pipeline.report.plots import model_history_png
from llm_pipeline.report.promotion import PromotionDecision, champion_to_score, refuse_failed
from llm_pipeline.report.render import ReportInputs, write_report
from llm_pipeline.report.settings import EvaluationReportSettings
from llm_pipeline.safe_open import UnsafeFileError, read_utf8
from llm_pipeline.text.funnel import read_cleaning
from llm_pipeline.text.split.split_file import SplitFileError, read_split_file

Warn = Callable[[str], None]


@dataclass(frozen=True)
class Evaluation:
    """One run's evaluation, before anything is written: its metrics, its `eval_files` scores,
    the promotion decision, and everything the report shows."""

    corpus: str
    run_id: str
    path: Path  # the run's checkpoint folder
    metrics: dict[str, Any]
    eval_files: dict[str, float]
    decision: PromotionDecision
    inputs: ReportInputs


@dataclass(frozen=True)
class PublishedReport:
    """What `publish_evaluation` wrote: the report's files and summary (`write_report`) and
    what MLflow recorded (empty when tracking is off)."""

    written: dict[str, Any]
    tracked: dict[str, Any]


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


def history_after(corpus: str, models_root: Path, run_id: str, promoted: bool) -> list[dict]:
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


def score_eval_files(
    run: LoadedRun, names: list[str], data_root: Path
) -> tuple[dict[str, float], list[str]]:
    """Bits per byte of `run` on each fixed eval file (by file name), and their texts. The
    files are user-named, so each must stay under `data_root`, be a regular file (a FIFO is
    refused, never waited on), decode as UTF-8 and hold text."""
    scores: dict[str, float] = {}
    texts: list[str] = []
    for name in names:
        try:
            file = within_root(data_root, name)
        except PipelineInputError as exc:
            raise PipelineInputError(f"eval file {name!r}: {exc}") from None
        try:  # a regular file only, streamed: a FIFO is refused, never waited on
            text = read_utf8(file, data_root)
        except UnsafeFileError as exc:
            raise PipelineInputError(
                f"eval file {file}: {exc.reason}; only regular files"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PipelineInputError(f"eval file {file}: cannot be read as UTF-8 ({exc})") from None
        if not text:
            raise PipelineInputError(f"eval file {file}: empty")
        block_size = run.model.config.block_size
        scores[file.name] = text_bits_per_byte(
            run.model, run.tokenizer, text, run.eot_id, block_size
        )
        texts.append(text)
    return scores, texts


def sample_completions(run: LoadedRun, settings: EvaluationReportSettings) -> list[dict]:
    """One seeded completion per prompt, so the same model shows the same samples."""
    generator = torch.Generator().manual_seed(settings.seed)
    return [
        {
            "prompt": prompt,
            "completion": complete(
                run,
                prompt,
                settings.max_new_tokens,
                settings.temperature,
                settings.top_k,
                generator,
            ),
            "temperature": settings.temperature,
            "top_k": settings.top_k or None,
        }
        for prompt in settings.prompts
    ]


def run_metrics(summary: TrainingSummary, checkpoint: CheckpointConfig) -> dict[str, Any]:
    """The headline numbers of a finished run, from its training summary."""
    return {
        "bits_per_byte": summary.val_bits_per_byte,
        "bits_per_byte_stderr": summary.val_bits_per_byte_stderr,
        "unigram_bits_per_byte": summary.unigram_bits_per_byte,
        "val_loss": summary.val_loss,
        "perplexity": math.exp(min(summary.val_loss, 50.0)),
        "tokens_seen": summary.tokens_seen,
        "parameters": summary.parameters,
        "training_seconds": summary.training_seconds,
        "tokens_per_s": summary.tokens_per_s,
        "architecture": checkpoint.model["architecture"],
        "steps": summary.steps,
        "stop_reason": summary.stop_reason,
    }


def evaluate_run(
    corpus: str,
    models_root: Path,
    data_root: Path,
    cleaned: Path,
    settings: EvaluationReportSettings,
    warn: Warn | None = None,
) -> Evaluation:
    """Score the corpus's latest run (`models/<corpus>/latest`) and decide whether it replaces
    the champion (`current`) on text neither trained on (`report/comparison.py`); nothing is
    written. A run that fails a model check (`lm/model_checks.py`) is still scored and
    reported, with the failures at the top, and is never promoted. `cleaned` is the cleaned
    corpus folder (validation text, funnel, split)."""
    run_id = read_pointer(corpus, LATEST, models_root)
    if run_id is None:
        raise PipelineInputError(f"corpus {corpus!r}: no trained model; materialize trained_model")
    path = run_dir(corpus, run_id, models_root)
    run = load_run(path)
    history = read_metrics(path)
    summary = run.config.require_summary(path)
    eval_files, eval_texts = score_eval_files(run, settings.eval_files, data_root)
    samples = sample_completions(run, settings)
    failed = [
        c for c in run_model_checks(run, tokens_dir(corpus, data_root), cleaned) if not c.passed
    ]
    champion_id = champion_to_score(read_pointer(corpus, CURRENT, models_root), run_id)
    decision = compare_with_champion(cleaned, models_root, corpus, path,
                                     scored_run(run_id, summary), champion_id, eval_texts,
                                     warn)  # fmt: skip
    decision = refuse_failed(decision, [c.name for c in failed])
    metrics = run_metrics(summary, run.config)
    inputs = ReportInputs(
        title=f"{corpus} — run {run_id}",
        metrics=metrics,
        eval_files=eval_files,
        history=history,
        samples=samples,
        comparison=decision.as_comparison(),
        cleaning=read_cleaning_stats(cleaned),
        split=read_split_info(cleaned),
        models=history_after(corpus, models_root, run_id, decision.promoted),
        failed_checks={c.name: c.description or "failed" for c in failed},
    )
    inputs.extra_images[HISTORY_IMAGE] = model_history_png(inputs.models, run_id)
    return Evaluation(corpus, run_id, path, metrics, eval_files, decision, inputs)


def publish_evaluation(evaluation: Evaluation, models_root: Path) -> PublishedReport:
    """Keep the decision with the run, write report.md and report.html, record them in MLflow
    (when on) and, on promotion, move `current` to the run — MLflow first: if it fails, this
    raises before `current` moves, so both still agree."""
    corpus, run_id, path = evaluation.corpus, evaluation.run_id, evaluation.path
    decision = evaluation.decision
    record_promotion(path, {**decision.as_comparison(), "eval_files": evaluation.eval_files})
    written = write_report(path, evaluation.inputs)
    scores = {f"eval_bpb_{name}": v for name, v in evaluation.eval_files.items()}
    scores["challenger_bits_per_byte"] = decision.challenger_bpb
    tracked = record_report(corpus, run_id, path, scores, decision.promoted)
    if decision.promoted:
        write_pointer(corpus, CURRENT, run_id, models_root)
    return PublishedReport(written, tracked)
