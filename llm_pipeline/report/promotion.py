"""The champion/challenger rule: which model becomes `current` for a corpus.

A new model (the challenger) replaces the promoted one (the champion) when it is no worse on
the same text, both scored in bits per byte with their own tokenizers. Kept apart from the
`evaluation_report` asset so the rule can be read and tested without Dagster or a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FIRST_MODEL = "first model for this corpus"


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the challenger is promoted, why, and the two scores it was decided on."""

    promoted: bool
    reason: str
    challenger_run: str
    challenger_bpb: float
    champion_run: str | None = None
    champion_bpb: float | None = None

    @property
    def difference(self) -> float | None:
        """Challenger minus champion bits per byte (negative: the challenger is better)."""
        return None if self.champion_bpb is None else self.challenger_bpb - self.champion_bpb

    def as_comparison(self) -> dict[str, Any]:
        """The comparison block of the report."""
        return {
            "champion_run": self.champion_run,
            "champion_bpb": self.champion_bpb,
            "challenger_run": self.challenger_run,
            "challenger_bpb": self.challenger_bpb,
            "difference": self.difference,
            "promoted": self.promoted,
            "reason": self.reason,
        }


def champion_to_score(champion_run: str | None, challenger_run: str) -> str | None:
    """The champion that must be scored for a decision, or None when there is none to beat."""
    return None if champion_run in (None, challenger_run) else champion_run


def decide_promotion(
    challenger_run: str,
    challenger_bpb: float,
    champion_run: str | None,
    champion_bpb: float | None,
    text: str = "validation text",
) -> PromotionDecision:
    """Promote the challenger unless the champion scored strictly better on the same `text`.

    No champion (or the challenger itself) means a first model; a champion that could not be
    scored (`champion_bpb` None) cannot block a working model, so the challenger is promoted.
    """
    if champion_to_score(champion_run, challenger_run) is None:
        return PromotionDecision(True, FIRST_MODEL, challenger_run, challenger_bpb)
    if champion_bpb is None:
        reason = f"champion {champion_run} could not be loaded"
        return PromotionDecision(True, reason, challenger_run, challenger_bpb, champion_run)
    promoted = challenger_bpb <= champion_bpb
    reason = f"{'no worse' if promoted else 'worse'} than the champion on the same {text}"
    return PromotionDecision(
        promoted, reason, challenger_run, challenger_bpb, champion_run, champion_bpb
    )
