"""The champion/challenger rule: which model becomes `current` for a corpus.

A new model (the challenger) replaces the promoted one (the champion) when it is no worse on
the same text, both scored in bits per byte with their own tokenizers, and only on text neither
trained on. `plan_comparison` decides which text that is, from the validation sets the two
checkpoints record (the split rule and the hash of the documents' keys):

- same validation set, same documents scored: the scores stored with the checkpoints are
  compared as they are (no model is run again);
- same validation set, a different number of documents scored: both are scored again on the
  documents both scored (the first ones, in table order);
- the split changed (the corpus grew, `val_fraction` or the cleaning changed): the champion may
  have trained on this validation text, so the comparison is on the validation documents both
  splits hold (their keys are kept with each checkpoint, text/split/validation_keys.py): text
  neither model trained on, as much as the challenger's own score covered. When those hold less than
  `MIN_SHARED_SHARE` of that, `eval_files` are preferred if configured, and the few shared
  documents used otherwise;
- nothing shared and no `eval_files` (or a champion that predates recorded validation sets):
  there is no fair text, and the champion stays (the reason says how to fix it).

Kept apart from `comparison.py`, which runs it on the checkpoints, so the rule can be read and
tested without Dagster or a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
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
    compared_on: str = ""
    like_for_like: bool = True
    # What a reader must know to weigh the difference: within the noise, different budgets or
    # settings (`comparison_notes`).
    notes: tuple[str, ...] = ()

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
            "compared_on": self.compared_on,
            "like_for_like": self.like_for_like,
            "notes": list(self.notes),
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
        promoted, reason, challenger_run, challenger_bpb, champion_run, champion_bpb, text
    )


def refuse_failed(decision: PromotionDecision, failed_checks: list[str]) -> PromotionDecision:
    """The decision for a model that failed checks: never promoted, whatever its score."""
    if not failed_checks:
        return decision
    reason = f"it failed its checks ({', '.join(failed_checks)})"
    if decision.champion_run is not None:
        reason += f"; on its score alone it would have been {decision.reason}"
    return replace(decision, promoted=False, reason=reason)


def noise_note(
    difference: float | None, challenger_se: float | None, champion_se: float | None
) -> str | None:
    """A note when the difference is within two standard errors of the two scores (their
    validation scores' errors, combined as independent: a bound, since both are on much the
    same text), so a reader does not take "worse" or "better" for a finding."""
    if difference is None or not challenger_se or not champion_se:
        return None
    margin = 2 * math.hypot(challenger_se, champion_se)
    if abs(difference) >= margin:
        return None
    return (
        f"The difference ({difference:+.4f} bits/byte) is within the noise: two standard errors "
        f"of the two scores are ±{margin:.4f}, so neither model is shown to be better."
    )


def setting_differences(challenger: dict, champion: dict, ignored: frozenset[str]) -> list[str]:
    """`key (champion → challenger)` for each training or model setting that differs. A key an
    older checkpoint lacks counts as the value such a model has (`LEGACY_DEFAULTS`)."""
    from llm_pipeline.lm.settings import LEGACY_DEFAULTS

    challenger, champion = {**LEGACY_DEFAULTS, **challenger}, {**LEGACY_DEFAULTS, **champion}
    keys = sorted((set(challenger) | set(champion)) - ignored)
    return [
        f"{key} ({champion.get(key)!r} → {challenger.get(key)!r})"
        for key in keys
        if challenger.get(key) != champion.get(key)
    ]


def comparison_notes(
    difference: float | None,
    stderrs: tuple[float | None, float | None],
    settings: tuple[dict, dict],
    budgets: tuple[tuple[int, float], tuple[int, float]],
    ignored: frozenset[str],
) -> tuple[str, ...]:
    """Notes on a champion/challenger comparison: the noise (`stderrs`: challenger, champion),
    the settings that differ (`settings`: challenger's and champion's model + training blocks,
    less the `ignored` machine settings), and the budgets actually spent (`budgets`: tokens seen
    and seconds, challenger's then champion's) when they differ by more than a tenth."""
    notes = [n for n in [noise_note(difference, *stderrs)] if n]
    differing = setting_differences(*settings, ignored)
    if differing:
        notes.append(
            "Champion and challenger were trained with different settings (champion → this "
            "run): " + ", ".join(differing) + "."
        )
    (mine, my_s), (theirs, their_s) = budgets
    if theirs and abs(mine - theirs) > 0.1 * max(mine, theirs):
        notes.append(
            f"They were trained on different budgets: this run saw {mine:,} tokens in "
            f"{my_s:.0f} s, the champion {theirs:,} tokens in {their_s:.0f} s; the one that "
            "trained longer is expected to score better."
        )
    return tuple(notes)


STORED, RESCORE, SHARED, EVAL_FILES, NO_FAIR_TEXT = (
    "stored", "rescore", "shared", "eval_files", "none"
)  # fmt: skip
# Shared validation documents are preferred to `eval_files` from this share of the bytes the
# challenger's own score covered: a quarter still gives a standard error about twice its own.
MIN_SHARED_SHARE = 0.25


@dataclass(frozen=True)
class ScoredRun:
    """A model as the rule sees it: its stored validation score and the set it is on."""

    run_id: str
    bits_per_byte: float | None
    validation_set: dict[str, Any] | None  # rule, keys_sha256, documents (lm ValidationSet)


@dataclass(frozen=True)
class ComparisonPlan:
    """On which text champion and challenger are compared, and how."""

    how: str
    text: str
    documents: int = 0
    like_for_like: bool = True


@dataclass(frozen=True)
class SharedText:
    """The validation documents both splits hold, as far as the report took them."""

    documents: int
    bytes: int


def same_validation_set(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two recorded validation sets are the same documents under the same rule."""
    return bool(a and b) and all(a.get(k) == b.get(k) for k in ("rule", "keys_sha256"))


def plan_comparison(
    challenger: ScoredRun,
    champion: ScoredRun,
    has_eval_files: bool,
    shared: SharedText | None = None,
) -> ComparisonPlan:
    """Which text the two are compared on (see the module): never text the champion may
    have trained on. `shared` is what the two validation sets have in common (None when
    either model's keys are unknown); it is only looked at when the split changed."""
    mine, theirs = challenger.validation_set, champion.validation_set
    if same_validation_set(mine, theirs) and mine and theirs:
        if mine.get("documents") == theirs.get("documents") and champion.bits_per_byte:
            n = int(mine.get("documents") or 0)
            return ComparisonPlan(STORED, f"validation set ({n} documents, stored scores)", n)
        n = min(int(mine.get("documents") or 0), int(theirs.get("documents") or 0))
        return ComparisonPlan(RESCORE, f"first {n} validation documents both scored", n)
    why = "predates recorded validation sets" if not theirs else "was trained on another split"
    if shared is not None and shared.documents:
        text = (
            f"{shared.documents} validation documents of both splits ({shared.bytes:,} bytes; "
            f"the champion {why})"
        )
        enough = shared.bytes >= MIN_SHARED_SHARE * int((mine or {}).get("bytes") or 0)
        if enough or not has_eval_files:
            return ComparisonPlan(SHARED, text, shared.documents)
    if has_eval_files:
        return ComparisonPlan(EVAL_FILES, f"eval_files (the champion {why})", 0, False)
    return ComparisonPlan(
        NO_FAIR_TEXT,
        f"nothing: the champion {why}, so it may have trained on this validation text; "
        "set evaluation_report.eval_files to held-out files to compare",
        0,
        False,
    )


def no_fair_comparison(
    challenger: ScoredRun, champion_run: str, plan: ComparisonPlan
) -> PromotionDecision:
    """The champion stays: no text exists that neither model trained on."""
    return PromotionDecision(
        False,
        f"not compared on {plan.text}",
        challenger.run_id,
        challenger.bits_per_byte or 0.0,
        champion_run,
        None,
        plan.text,
        False,
    )
