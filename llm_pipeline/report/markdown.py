"""The evaluation report as Markdown: what Dagster shows on the asset page and what reads well
in a repository. Built directly (no Markdown library), with every piece of user text escaped, so
a generated sample can never break out of its code block or inject markup."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

from llm_pipeline.markdown_escape import markdown_text
from llm_pipeline.report.content import (
    FAILED_CHECKS_TITLE,
    FUNNEL_HEADER,
    HISTORY_HEADER,
    HISTORY_IMAGE,
    SPLIT_HEADER,
    ReportInputs,
    comparison_rows,
    format_bpb,
    format_signed,
    funnel_rows,
    history_rows,
    metric_rows,
    normalise_newlines,
    promotion_sentence,
    sample_settings,
    split_rows,
    split_sentences,
)

_md = markdown_text  # inline text: no emphasis, links or raw HTML (llm_pipeline/markdown_escape)


def _md_table(header: list[str], rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return lines


def _md_fence(text: str) -> str:
    """A backtick fence longer than any backtick run in `text`, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _md_bold_lines(text: str) -> str:
    """Bold text over several lines: each non-blank line bolded, joined by hard line breaks.

    Emphasis cannot span a blank line and `** x**` is not bold, so lines are stripped and blank
    ones dropped; a trailing backslash is CommonMark's portable hard break (no raw HTML needed).
    """
    lines = [line.strip() for line in normalise_newlines(text).split("\n")]
    parts = [f"**{_md(line)}**" for line in lines if line]
    return "\\\n".join(parts) if parts else "*(empty prompt)*"


def _md_link_target(target: str) -> str:
    # Percent-encode spaces and parentheses so the link cannot end early; base64 (+/=) is kept.
    return quote(target, safe=":/;,+=%-._~")


def _this_run(inputs: ReportInputs) -> str | None:
    run = inputs.comparison.get("challenger_run")
    return str(run) if run else None


def render_markdown(inputs: ReportInputs, images: Mapping[str, str]) -> str:
    """The report as Markdown; `images` maps image name to link target (file name or data URI).

    Only images present in `images` are shown, so a caller can keep the Markdown small (for
    metadata) by passing just the loss plot.
    """
    out: list[str] = [f"# {_md(inputs.title)}", ""]
    if inputs.failed_checks:  # first, so nobody reads on taking the model for a good one
        out += [f"## {FAILED_CHECKS_TITLE}", ""]
        out += [f"- **{_md(name)}**: {_md(text)}" for name, text in inputs.failed_checks.items()]
        out.append("")
    out += ["## Headline metrics", ""]
    metric_table = metric_rows(inputs.metrics)
    if metric_table:
        out += _md_table(["Metric", "Value"], metric_table)
    else:
        out.append("No metrics were recorded.")

    comparison = inputs.comparison
    out += ["", "## Champion and challenger", ""]
    out += _md_table(["Role", "Run", "Bits per byte"], comparison_rows(comparison))
    out += [
        "",
        f"Difference (challenger − champion): {_md(format_signed(comparison.get('difference')))} "
        "bits per byte (negative is better).",
        "",
        _md(promotion_sentence(comparison)),
    ]
    for note in comparison.get("notes") or []:
        out += ["", _md(note)]

    if inputs.eval_files:
        out += ["", "## Fixed evaluation files", ""]
        rows = [(name, format_bpb(bpb)) for name, bpb in sorted(inputs.eval_files.items())]
        out += _md_table(["File", "Bits per byte"], rows)

    sides = split_rows(inputs.split)
    if sides:
        out += ["", "## Data split", ""]
        out += _md_table(SPLIT_HEADER, sides)
        for sentence in split_sentences(inputs.split, comparison):
            out += ["", _md(sentence)]

    funnel = funnel_rows(inputs.cleaning)
    if funnel:
        out += ["", "## Cleaning funnel", ""]
        out += _md_table(FUNNEL_HEADER, funnel)

    if inputs.models:
        out += ["", "## Model history", ""]
        if HISTORY_IMAGE in images:
            out += [f"![model history]({_md_link_target(images[HISTORY_IMAGE])})", ""]
        out += _md_table(HISTORY_HEADER, history_rows(inputs.models, _this_run(inputs)))
        images = {name: target for name, target in images.items() if name != HISTORY_IMAGE}

    if images:
        out += ["", "## Plots", ""]
        for name, target in images.items():
            out += [f"![{_md(name)}]({_md_link_target(target)})", ""]
        out.pop()

    if inputs.samples:
        out += ["", "## Samples"]
        for i, sample in enumerate(inputs.samples, start=1):
            completion = normalise_newlines(str(sample.get("completion", "")))
            fence = _md_fence(completion)
            out += [
                "",
                f"### Sample {i} ({_md(sample_settings(sample))})",
                "",
                _md_bold_lines(str(sample.get("prompt", ""))),
                "",
                f"{fence}text",
                completion,
                fence,
            ]
    return "\n".join(out) + "\n"
