"""The champion/challenger comparison, run: the text `promotion.plan_comparison` picks, fetched
from the cleaned corpus, and the models scored on it again only when their stored scores are
not on the same documents.

`promotion.py` holds the rule (pure, no model); this module loads checkpoints and scores them,
so it is the part that needs torch. The `evaluation_report` stage (`report/evaluation.py`)
calls `compare_with_champion`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from llm_pipeline.errors import PipelineInputError
from llm_pipeline.lm.evaluate import texts_bits_per_byte
from llm_pipeline.lm.model.sampling import load_run
from llm_pipeline.lm.store.checkpoint import read_config
from llm_pipeline.lm.store.checkpoint_config import CheckpointConfig, TrainingSummary
from llm_pipeline.lm.store.folders import run_dir
from llm_pipeline.report.promotion import (
    NO_FAIR_TEXT,
    RESCORE,
    SHARED,
    STORED,
    PromotionDecision,
    ScoredRun,
    SharedText,
    comparison_notes,
    decide_promotion,
    no_fair_comparison,
    plan_comparison,
    same_validation_set,
)
from llm_pipeline.text.split.validation_keys import (
    VALIDATION_KEYS_FILE,
    read_validation_keys,
    shared_validation_texts,
)
from llm_pipeline.text.store import parquet_parts
from llm_pipeline.tokens.shards import iter_split_batches

Warn = Callable[[str], None]


def validation_texts(cleaned: Path, documents: int) -> list[str]:
    """The first `documents` validation documents in table order: the ones `val.bin` starts
    with, so the trainer's stored score and a re-score here are on the same text."""
    texts: list[str] = []
    for texts_batch, _, _ in iter_split_batches(parquet_parts(cleaned), side="val"):
        texts.extend(texts_batch[: documents - len(texts)])
        if len(texts) >= documents:
            break
    return texts


def score_on(path: Path, texts: list[str]) -> float:
    """Bits per byte of the checkpoint in `path` on `texts`, with its own tokenizer."""
    run = load_run(path)
    return texts_bits_per_byte(
        run.model, run.tokenizer, texts, run.eot_id, run.model.config.block_size
    )


def scored_run(run_id: str, summary: TrainingSummary | None) -> ScoredRun:
    """A run as the promotion rule sees it: its stored score and the validation set it was
    scored on (None for both when the checkpoint has no summary)."""
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


def compare_with_champion(
    cleaned: Path, models_root: Path, corpus: str, path: Path, challenger: ScoredRun,
    champion_id: str | None, eval_texts: list[str], warn: Warn | None = None,
) -> PromotionDecision:  # fmt: skip
    """The champion/challenger decision on text neither model trained on (report/promotion.py);
    models are run again only when the stored scores are not on the same documents. A champion
    that cannot be read or scored is named in a warning and decided on without its score (it
    cannot block a working model: `decide_promotion`).
    """
    bpb = challenger.bits_per_byte or 0.0
    if champion_id is None:
        return decide_promotion(challenger.run_id, bpb, None, None)
    champion_path = run_dir(corpus, champion_id, models_root)
    try:
        champion_config = read_config(champion_path)
    except PipelineInputError as exc:
        if warn is not None:
            warn(f"champion {champion_id} cannot be evaluated: {exc}")
        return decide_promotion(challenger.run_id, bpb, champion_id, None)
    decision = _decide(cleaned, path, challenger, champion_path, champion_config, eval_texts, warn)
    return _with_notes(decision, path, champion_config)


def _with_notes(
    decision: PromotionDecision, path: Path, champion: CheckpointConfig
) -> PromotionDecision:
    """The decision with what a reader must know to weigh it (`promotion.comparison_notes`)."""
    from llm_pipeline.lm.settings import NOT_COMPARED

    mine = read_config(path)
    if mine.summary is None or champion.summary is None:
        return decision
    a, b = mine.summary, champion.summary
    notes = comparison_notes(
        decision.difference,
        (a.val_bits_per_byte_stderr, b.val_bits_per_byte_stderr),
        ({**mine.model, **mine.training}, {**champion.model, **champion.training}),
        ((a.tokens_seen, a.training_seconds), (b.tokens_seen, b.training_seconds)),
        NOT_COMPARED,
    )
    return replace(decision, notes=notes)


def _decide(
    cleaned: Path, path: Path, challenger: ScoredRun, champion_path: Path,
    champion_config: CheckpointConfig, eval_texts: list[str], warn: Warn | None,
) -> PromotionDecision:  # fmt: skip
    """The decision against a readable champion, on the text `plan_comparison` picks."""
    champion_id, bpb = champion_path.name, challenger.bits_per_byte or 0.0
    champion = scored_run(champion_id, champion_config.summary)
    shared, common = [], None
    if not same_validation_set(challenger.validation_set, champion.validation_set):
        shared, common = shared_texts(cleaned, challenger, path, champion, champion_path)
    plan = plan_comparison(challenger, champion, bool(eval_texts), common)
    if plan.how == NO_FAIR_TEXT:
        return no_fair_comparison(challenger, champion_id, plan)
    if plan.how == STORED:
        return decide_promotion(challenger.run_id, bpb, champion_id, champion.bits_per_byte,
                                plan.text)  # fmt: skip
    texts = eval_texts
    if plan.how == RESCORE:
        texts = validation_texts(cleaned, plan.documents)
    elif plan.how == SHARED:
        texts = shared
    try:
        champion_bpb = score_on(champion_path, texts)
    except PipelineInputError as exc:
        if warn is not None:
            warn(f"champion {champion_id} cannot be evaluated: {exc}")
        champion_bpb = None
    decision = decide_promotion(challenger.run_id, score_on(path, texts), champion_id,
                                champion_bpb, plan.text)  # fmt: skip
    return replace(decision, like_for_like=plan.like_for_like)
