"""What the evaluation report says, as plain data and plain text, shared by both outputs.

`ReportInputs` is everything a report shows; the functions here turn it into rows and sentences
of unescaped text. `markdown.py` and `html_page.py` lay those out and escape them, each its own
way, so the two formats always say the same thing.
"""

from __future__ import annotations

import base64
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llm_pipeline.text.split.sides import SplitSummary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Headline metrics in display order (bits per byte first: it is comparable across tokenizers,
# unlike loss per token). Each has a label and a formatter; any other scalar key follows, sorted.
_KNOWN_METRICS: dict[str, tuple[str, str]] = {
    "bits_per_byte": ("Bits per byte (validation)", "4dp"),
    "bits_per_byte_stderr": ("Bits per byte, standard error", "4dp"),
    "unigram_bits_per_byte": ("Unigram baseline bits per byte", "4dp"),
    "val_loss": ("Validation loss (nats/token)", "4dp"),
    "perplexity": ("Perplexity", "2dp"),
    "tokens_seen": ("Tokens seen", "count"),
    "parameters": ("Parameters", "count"),
    "training_seconds": ("Training time", "seconds"),
    "tokens_per_s": ("Throughput", "rate"),
    "architecture": ("Architecture", "text"),
}


@dataclass
class ReportInputs:
    """Everything a report shows; plain data so it can be built without a Dagster instance.

    `comparison["difference"]` is challenger bits per byte minus champion bits per byte (negative
    means the challenger is better); it is None when there is no champion.
    """

    title: str
    metrics: dict[str, Any]
    eval_files: dict[str, float]
    history: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    comparison: dict[str, Any]
    extra_images: dict[str, bytes] = field(default_factory=dict)
    # The cleaned corpus's `cleaning.json` stats (docs_in, bytes_in, funnel, ...), if known.
    cleaning: dict[str, Any] | None = None
    # The cleaned corpus's `split.json` (sides, rule, leakage), if known.
    split: dict[str, Any] | None = None
    # Every model of the corpus (`lm/store/history.py` records as dicts), oldest first.
    models: list[dict[str, Any]] = field(default_factory=list)
    # The model checks this run failed (lm/model_checks.py): name → what failed, what to try.
    failed_checks: dict[str, str] = field(default_factory=dict)


FAILED_CHECKS_TITLE = "This model failed its checks and was not promoted"


SPLIT_HEADER = ["Side", "Documents", "MB", "Share of bytes"]


def split_rows(split: Mapping[str, Any] | None) -> list[tuple[str, ...]]:
    """Documents, MB and byte share per side of the train/validation split."""
    if not split:
        return []
    total = max(int(split.get("train_bytes", 0)) + int(split.get("val_bytes", 0)), 1)
    return [
        (
            side,
            f"{int(split.get(f'{side}_docs', 0)):,}",
            f"{int(split.get(f'{side}_bytes', 0)) / 1e6:,.3f}",
            f"{int(split.get(f'{side}_bytes', 0)) / total:.1%}",
        )
        for side in ("train", "val")
    ]


def split_sentences(split: Mapping[str, Any] | None, comparison: Mapping[str, Any]) -> list[str]:
    """How the split was made, the overlap figure, and whether the comparison was fair."""
    out: list[str] = []
    if split:
        leakage = split.get("leakage") or {}
        if leakage:
            sentence = (
                f"Overlap: {float(leakage.get('share', 0.0)):.2%} of validation bytes lie in "
                f"documents with at least half of their word 8-grams inside one training "
                f"document ({int(leakage.get('leaked_docs', 0))} documents)"
            )
            if "overlap" in leakage:  # measured since issue 21
                sentence += (
                    f"; {float(leakage['overlap']):.2%} of validation word 13-grams occur in "
                    "training text"
                )
            out.append(sentence + ".")
        how = f"How: {split.get('mode', '?')}; {split.get('rule', '?')}; "
        problem = None
        try:
            summary = SplitSummary.from_dict({k: v for k, v in split.items() if k != "leakage"})
            how += summary.decisions()
            problem = summary.problem()
        except TypeError:  # a split.json of another shape: its counts as they are
            how += (
                f"{int(split.get('clusters_joined', 0))} near-copy or containment joins kept "
                "together on one side."
            )
        out.append(how)
        if problem:
            out.append(f"Outside the bounds: {problem}")
    if comparison.get("champion_run") is not None:
        fair = "like for like" if comparison.get("like_for_like", True) else "NOT like for like"
        out.append(
            f"Champion comparison: {fair}, on {comparison.get('compared_on') or 'validation text'}."
        )
    return out


# The history plot's image name: shown in the history section, next to its table.
HISTORY_IMAGE = "model_history"
HISTORY_HEADER = ["Run", "Trained (UTC)", "Architecture", "Parameters", "Tokens", "Bits per byte",
                  "Promoted"]  # fmt: skip


def history_rows(models: list[dict[str, Any]], this_run: str | None) -> list[tuple[str, ...]]:
    """One row per model, oldest first; the champion and this run are named in the run cell."""
    from datetime import datetime, timezone

    rows = []
    for m in sorted(models, key=lambda m: float(m["trained_at"])):
        flags = {"champion": m.get("champion"), "this run": m.get("run_id") == this_run}
        marks = [label for label, flag in flags.items() if flag]
        run = str(m["run_id"]) + (f" ({', '.join(marks)})" if marks else "")
        when = datetime.fromtimestamp(float(m["trained_at"]), tz=timezone.utc)
        rows.append(
            (
                run,
                when.strftime("%Y-%m-%d %H:%M"),
                str(m.get("architecture", "?")),
                f"{int(m.get('parameters', 0)):,}",
                f"{int(m.get('tokens_seen', 0)):,}",
                format_bpb(m.get("val_bits_per_byte")),
                "yes" if m.get("promoted") else "no",
            )
        )
    return rows


def funnel_rows(cleaning: Mapping[str, Any] | None) -> list[tuple[str, ...]]:
    """(step, documents removed, MB removed, documents left) per cleaning step."""
    if not cleaning or not cleaning.get("funnel"):
        return []
    rows = [("input", "", "", f"{int(cleaning.get('docs_in', 0)):,}")]
    for r in cleaning["funnel"]:
        rows.append(
            (
                str(r["step"]),
                f"{int(r['docs_removed']):,}",
                f"{r['bytes_removed'] / 1e6:,.3f}",
                f"{int(r['docs_left']):,}",
            )
        )
    return rows


FUNNEL_HEADER = ["Step", "Documents removed", "MB removed", "Documents left"]


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, numbers.Real))


def _format_float(value: float, decimals: int) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.{decimals}f}"


def _format_value(key: str, value: Any, kind: str | None = None) -> str:
    """Format one metric: fixed decimals for losses, separators for counts, seconds to 0.1 s."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) or not isinstance(value, numbers.Real):
        return str(value)
    if kind is None:  # an extra key: guess the kind from its name and type
        if key.endswith("seconds"):
            kind = "seconds"
        elif isinstance(value, numbers.Integral):
            kind = "count"
        elif "loss" in key or "bpb" in key or "bits" in key:
            kind = "4dp"
        else:
            kind = "4dp" if abs(float(value)) < 1000 else "rate"
    number = float(value)
    if kind == "4dp":
        return _format_float(number, 4)
    if kind == "2dp":
        return _format_float(number, 2)
    if kind == "count":
        return f"{int(value):,}" if math.isfinite(number) else str(value)
    if kind == "seconds":
        return _format_float(number, 1) + " s"
    if kind == "rate":
        return _format_float(number, 0) + (" tokens/s" if key == "tokens_per_s" else "")
    return str(value)


def metric_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = [
        (label, _format_value(key, metrics[key], kind))
        for key, (label, kind) in _KNOWN_METRICS.items()
        if key in metrics
    ]
    extras = sorted(k for k in metrics if k not in _KNOWN_METRICS and _is_scalar(metrics[k]))
    rows += [(key, _format_value(key, metrics[key])) for key in extras]
    return rows


def format_bpb(value: Any) -> str:
    return "—" if value is None else _format_float(float(value), 4)


def format_signed(value: Any) -> str:
    return "—" if value is None else f"{float(value):+.4f}"


def comparison_rows(comparison: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    champion = comparison.get("champion_run")
    rows = [
        (
            "Champion",
            "none (no champion yet)" if champion is None else str(champion),
            format_bpb(comparison.get("champion_bpb")),
        ),
        (
            "Challenger (this run)",
            str(comparison.get("challenger_run", "")),
            format_bpb(comparison.get("challenger_bpb")),
        ),
    ]
    return rows


def promotion_sentence(comparison: Mapping[str, Any]) -> str:
    """One sentence a reader can act on: did this run replace the champion, and why."""
    promoted = bool(comparison.get("promoted"))
    reason = str(comparison.get("reason") or "").strip().rstrip(".")
    because = f": {reason}." if reason else "."
    if comparison.get("champion_run") is None:
        if promoted:
            return "There is no champion yet, so this run was promoted to champion" + because
        return "There is no champion yet, and this run was not promoted" + because
    if promoted:
        return (
            f"This run was promoted and replaces {comparison['champion_run']} as champion" + because
        )
    return f"This run was not promoted; {comparison['champion_run']} remains champion" + because


def sample_settings(sample: Mapping[str, Any]) -> str:
    temperature = sample.get("temperature")
    top_k = sample.get("top_k")
    parts = [f"temperature {temperature:g}" if temperature is not None else "temperature —"]
    parts.append("top-k off" if top_k is None else f"top-k {top_k}")
    return ", ".join(parts)


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def check_png(name: str, data: bytes) -> None:
    if not data.startswith(PNG_MAGIC):
        raise ValueError(f"report image {name!r} is not PNG data (bad magic bytes)")


def png_data_uri(data: bytes) -> str:
    """A `data:image/png;base64,...` URI, so a page or metadata entry carries its own image."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
