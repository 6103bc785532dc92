"""The `evaluation_report` settings, defined once (see llm_pipeline/settings_base.py)."""

from __future__ import annotations

from llm_pipeline.settings_base import Settings, Stage, setting

DEFAULT_PROMPTS = ["The", "Return the", "This module provides", "If the"]


class EvaluationReportSettings(Settings):
    """What the report measures and shows."""

    eval_files: list[str] = setting(
        [],
        "Fixed held-out text files, each scored in bits per byte with the model's own "
        "tokenizer, to track models across corpus versions and architectures. Paths are "
        "relative to the data root and may not lead outside it.",
    )
    prompts: list[str] = setting(DEFAULT_PROMPTS, "Sample prompts.")
    max_new_tokens: int = setting(60, "Tokens generated per sample.", ge=1)
    temperature: float = setting(0.8, "Sampling temperature; 0 is greedy.", ge=0.0)
    top_k: int = setting(40, "Sample from the k likeliest tokens; 0: all.", ge=0)
    seed: int = setting(0, "Seed for the samples.")


# The champion comparison now uses the validation documents both models were scored on (or
# eval_files), decided by report/promotion.py: no byte budget of its own any more.
MOVED_KEYS = {
    "compare_max_bytes": "the trained_model scores (the comparison reuses them; see the README)"
}

EVALUATION_REPORT = Stage(
    "evaluation_report",
    EvaluationReportSettings,
    EvaluationReportSettings.__doc__ or "",
    moved=MOVED_KEYS,
)
