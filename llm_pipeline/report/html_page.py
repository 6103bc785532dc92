"""The evaluation report as one self-contained HTML page: the file a user opens or mails
around, so it embeds its images, inlines its CSS and escapes all user text with `html.escape`."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from llm_pipeline.report.content import (
    FAILED_CHECKS_TITLE,
    FUNNEL_HEADER,
    HISTORY_HEADER,
    HISTORY_IMAGE,
    SPLIT_HEADER,
    ReportInputs,
    check_png,
    comparison_rows,
    format_bpb,
    format_signed,
    funnel_rows,
    history_rows,
    metric_rows,
    normalise_newlines,
    png_data_uri,
    promotion_sentence,
    sample_settings,
    split_rows,
    split_sentences,
)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 960px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: .8em 0; }
th, td { border: 1px solid #ddd; padding: .3em .8em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f6f6f6; }
img { max-width: 100%; height: auto; display: block; margin: .8em 0; }
.prompt { font-weight: bold; white-space: pre-wrap; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; white-space: pre-wrap; }
.settings { color: #666; font-weight: normal; font-size: .9em; }
.failed { border: 2px solid #c00; background: #fff4f4; padding: 0 1em; margin: 1em 0; }
""".strip()


def _h(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_table(header: list[str], rows: list[tuple[str, ...]], numeric_last: bool) -> str:
    head = "".join(f"<th>{_h(cell)}</th>" for cell in header)
    body = []
    for row in rows:
        cells = [
            f'<td class="num">{_h(c)}</td>'
            if numeric_last and j == len(row) - 1
            else f"<td>{_h(c)}</td>"
            for j, c in enumerate(row)
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(inputs: ReportInputs, images: Mapping[str, bytes]) -> str:
    """The report as one self-contained HTML page; `images` maps image name to PNG bytes.

    Images are embedded as data URIs and the CSS is inline, so the file works offline, as an
    attachment, or behind a proxy, and all user text goes through `html.escape`.
    """
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_h(inputs.title)}</title>",
        f"<style>{_CSS}</style></head>",
        "<body>",
        f"<h1>{_h(inputs.title)}</h1>",
    ]
    if inputs.failed_checks:  # first, so nobody reads on taking the model for a good one
        items = "".join(
            f"<li><strong>{_h(name)}</strong>: {_h(text)}</li>"
            for name, text in inputs.failed_checks.items()
        )
        parts.append(
            f'<div class="failed"><h2>{_h(FAILED_CHECKS_TITLE)}</h2><ul>{items}</ul></div>'
        )
    parts.append("<h2>Headline metrics</h2>")
    metric_table = metric_rows(inputs.metrics)
    if metric_table:
        parts.append(_html_table(["Metric", "Value"], metric_table, numeric_last=True))
    else:
        parts.append("<p>No metrics were recorded.</p>")

    comparison = inputs.comparison
    parts += [
        "<h2>Champion and challenger</h2>",
        _html_table(["Role", "Run", "Bits per byte"], comparison_rows(comparison), True),
        f"<p>Difference (challenger − champion): {_h(format_signed(comparison.get('difference')))} "
        "bits per byte (negative is better).</p>",
        f"<p>{_h(promotion_sentence(comparison))}</p>",
        *(f"<p>{_h(note)}</p>" for note in comparison.get("notes") or []),
    ]

    if inputs.eval_files:
        rows = [(name, format_bpb(bpb)) for name, bpb in sorted(inputs.eval_files.items())]
        parts += [
            "<h2>Fixed evaluation files</h2>",
            _html_table(["File", "Bits per byte"], rows, True),
        ]

    sides = split_rows(inputs.split)
    if sides:
        parts += ["<h2>Data split</h2>", _html_table(SPLIT_HEADER, sides, True)]
        parts += [f"<p>{_h(s)}</p>" for s in split_sentences(inputs.split, comparison)]

    funnel = funnel_rows(inputs.cleaning)
    if funnel:
        parts += ["<h2>Cleaning funnel</h2>", _html_table(FUNNEL_HEADER, funnel, True)]

    if inputs.models:
        parts.append("<h2>Model history</h2>")
        if HISTORY_IMAGE in images:
            check_png(HISTORY_IMAGE, images[HISTORY_IMAGE])
            parts.append(f'<img alt="model history" src="{png_data_uri(images[HISTORY_IMAGE])}">')
        this_run = inputs.comparison.get("challenger_run")
        rows = history_rows(inputs.models, str(this_run) if this_run else None)
        parts.append(_html_table(HISTORY_HEADER, rows, False))
        images = {name: data for name, data in images.items() if name != HISTORY_IMAGE}

    if images:
        parts.append("<h2>Plots</h2>")
        for name, data in images.items():
            check_png(name, data)
            parts.append(f'<img alt="{_h(name)}" src="{png_data_uri(data)}">')

    if inputs.samples:
        parts.append("<h2>Samples</h2>")
        for i, sample in enumerate(inputs.samples, start=1):
            prompt = normalise_newlines(str(sample.get("prompt", "")))
            completion = normalise_newlines(str(sample.get("completion", "")))
            parts += [
                f'<h3>Sample {i} <span class="settings">({_h(sample_settings(sample))})</span>'
                "</h3>",
                f'<p class="prompt">{_h(prompt)}</p>',
                f"<pre><code>{_h(completion)}</code></pre>",
            ]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
