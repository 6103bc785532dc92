"""The evaluation report of a trained model, as Markdown and as a self-contained HTML page.

Markdown is what Dagster shows on the asset page and what reads well in a repository; HTML is the
file a user opens or mails around, so it embeds its images and carries no external resources.
Both are built directly from `ReportInputs` (no Markdown library), so each format escapes user
text its own way: generated samples are arbitrary text and must never be able to break out of
their code block or inject markup.
"""

from __future__ import annotations

import base64
import html
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from llm_pipeline.atomic import write_bytes_atomic
from llm_pipeline.report.plots import funnel_plot_png, loss_plot_png, lr_plot_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LOSS_IMAGE = "loss"
LR_IMAGE = "lr"
FUNNEL_IMAGE = "cleaning_funnel"
_IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# Headline metrics in display order (bits per byte first: it is comparable across tokenizers,
# unlike loss per token). Each has a label and a formatter; any other scalar key follows, sorted.
_KNOWN_METRICS: dict[str, tuple[str, str]] = {
    "bits_per_byte": ("Bits per byte (validation)", "4dp"),
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


def _funnel_rows(cleaning: Mapping[str, Any] | None) -> list[tuple[str, ...]]:
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


_FUNNEL_HEADER = ["Step", "Documents removed", "MB removed", "Documents left"]


# ---------------------------------------------------------------------------------------------
# Formatting shared by both outputs (plain text; each output escapes it its own way)


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


def _metric_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = [
        (label, _format_value(key, metrics[key], kind))
        for key, (label, kind) in _KNOWN_METRICS.items()
        if key in metrics
    ]
    extras = sorted(k for k in metrics if k not in _KNOWN_METRICS and _is_scalar(metrics[k]))
    rows += [(key, _format_value(key, metrics[key])) for key in extras]
    return rows


def _bpb(value: Any) -> str:
    return "—" if value is None else _format_float(float(value), 4)


def _signed(value: Any) -> str:
    return "—" if value is None else f"{float(value):+.4f}"


def _comparison_rows(comparison: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    champion = comparison.get("champion_run")
    rows = [
        (
            "Champion",
            "none (no champion yet)" if champion is None else str(champion),
            _bpb(comparison.get("champion_bpb")),
        ),
        (
            "Challenger (this run)",
            str(comparison.get("challenger_run", "")),
            _bpb(comparison.get("challenger_bpb")),
        ),
    ]
    return rows


def _promotion_sentence(comparison: Mapping[str, Any]) -> str:
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


def _sample_settings(sample: Mapping[str, Any]) -> str:
    temperature = sample.get("temperature")
    top_k = sample.get("top_k")
    parts = [f"temperature {temperature:g}" if temperature is not None else "temperature —"]
    parts.append("top-k off" if top_k is None else f"top-k {top_k}")
    return ", ".join(parts)


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _check_png(name: str, data: bytes) -> None:
    if not data.startswith(PNG_MAGIC):
        raise ValueError(f"report image {name!r} is not PNG data (bad magic bytes)")


def png_data_uri(data: bytes) -> str:
    """A `data:image/png;base64,...` URI, so a page or metadata entry carries its own image."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#!])")


def _md(text: Any) -> str:
    """Inline Markdown text: punctuation backslash-escaped (no emphasis, links or raw HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


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
    lines = [line.strip() for line in _normalise_newlines(text).split("\n")]
    parts = [f"**{_md(line)}**" for line in lines if line]
    return "\\\n".join(parts) if parts else "*(empty prompt)*"


def _md_link_target(target: str) -> str:
    # Percent-encode spaces and parentheses so the link cannot end early; base64 (+/=) is kept.
    return quote(target, safe=":/;,+=%-._~")


def render_markdown(inputs: ReportInputs, images: Mapping[str, str]) -> str:
    """The report as Markdown; `images` maps image name to link target (file name or data URI).

    Only images present in `images` are shown, so a caller can keep the Markdown small (for
    metadata) by passing just the loss plot.
    """
    out: list[str] = [f"# {_md(inputs.title)}", "", "## Headline metrics", ""]
    metric_rows = _metric_rows(inputs.metrics)
    if metric_rows:
        out += _md_table(["Metric", "Value"], metric_rows)
    else:
        out.append("No metrics were recorded.")

    comparison = inputs.comparison
    out += ["", "## Champion and challenger", ""]
    out += _md_table(["Role", "Run", "Bits per byte"], _comparison_rows(comparison))
    out += [
        "",
        f"Difference (challenger − champion): {_md(_signed(comparison.get('difference')))} "
        "bits per byte (negative is better).",
        "",
        _md(_promotion_sentence(comparison)),
    ]

    if inputs.eval_files:
        out += ["", "## Fixed evaluation files", ""]
        rows = [(name, _bpb(bpb)) for name, bpb in sorted(inputs.eval_files.items())]
        out += _md_table(["File", "Bits per byte"], rows)

    funnel = _funnel_rows(inputs.cleaning)
    if funnel:
        out += ["", "## Cleaning funnel", ""]
        out += _md_table(_FUNNEL_HEADER, funnel)

    if images:
        out += ["", "## Plots", ""]
        for name, target in images.items():
            out += [f"![{_md(name)}]({_md_link_target(target)})", ""]
        out.pop()

    if inputs.samples:
        out += ["", "## Samples"]
        for i, sample in enumerate(inputs.samples, start=1):
            completion = _normalise_newlines(str(sample.get("completion", "")))
            fence = _md_fence(completion)
            out += [
                "",
                f"### Sample {i} ({_md(_sample_settings(sample))})",
                "",
                _md_bold_lines(str(sample.get("prompt", ""))),
                "",
                f"{fence}text",
                completion,
                fence,
            ]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# HTML

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
        "<h2>Headline metrics</h2>",
    ]
    metric_rows = _metric_rows(inputs.metrics)
    if metric_rows:
        parts.append(_html_table(["Metric", "Value"], metric_rows, numeric_last=True))
    else:
        parts.append("<p>No metrics were recorded.</p>")

    comparison = inputs.comparison
    parts += [
        "<h2>Champion and challenger</h2>",
        _html_table(["Role", "Run", "Bits per byte"], _comparison_rows(comparison), True),
        f"<p>Difference (challenger − champion): {_h(_signed(comparison.get('difference')))} "
        "bits per byte (negative is better).</p>",
        f"<p>{_h(_promotion_sentence(comparison))}</p>",
    ]

    if inputs.eval_files:
        rows = [(name, _bpb(bpb)) for name, bpb in sorted(inputs.eval_files.items())]
        parts += [
            "<h2>Fixed evaluation files</h2>",
            _html_table(["File", "Bits per byte"], rows, True),
        ]

    funnel = _funnel_rows(inputs.cleaning)
    if funnel:
        parts += ["<h2>Cleaning funnel</h2>", _html_table(_FUNNEL_HEADER, funnel, True)]

    if images:
        parts.append("<h2>Plots</h2>")
        for name, data in images.items():
            _check_png(name, data)
            parts.append(f'<img alt="{_h(name)}" src="{png_data_uri(data)}">')

    if inputs.samples:
        parts.append("<h2>Samples</h2>")
        for i, sample in enumerate(inputs.samples, start=1):
            prompt = _normalise_newlines(str(sample.get("prompt", "")))
            completion = _normalise_newlines(str(sample.get("completion", "")))
            parts += [
                f'<h3>Sample {i} <span class="settings">({_h(_sample_settings(sample))})</span>'
                "</h3>",
                f'<p class="prompt">{_h(prompt)}</p>',
                f"<pre><code>{_h(completion)}</code></pre>",
            ]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------
# Files


def _image_file_name(name: str) -> str:
    if not _IMAGE_NAME.match(name) or ".." in name:
        raise ValueError(
            f"report image name {name!r} must be 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name if name.lower().endswith(".png") else f"{name}.png"


def write_report(out_dir: Path, inputs: ReportInputs) -> dict[str, Any]:
    """Write the plots, `report.md` and `report.html` into `out_dir`, each file atomically.

    Images are written before the reports that reference them, so a reader never finds a report
    pointing at a missing plot. Returns the two report paths and `metadata_markdown`: the same
    Markdown with only the loss plot embedded as a data URI, small enough for asset metadata.
    """
    out_dir = Path(out_dir)
    images: dict[str, bytes] = {
        LOSS_IMAGE: loss_plot_png(inputs.history),
        LR_IMAGE: lr_plot_png(inputs.history),
    }
    if _funnel_rows(inputs.cleaning):
        cleaning = inputs.cleaning or {}
        images[FUNNEL_IMAGE] = funnel_plot_png(
            cleaning["funnel"], int(cleaning.get("docs_in", 0)), int(cleaning.get("bytes_in", 0))
        )
    for name, data in inputs.extra_images.items():
        if name in images:
            raise ValueError(f"report image name {name!r} is reserved for a built-in plot")
        _check_png(name, data)
        images[name] = data

    file_names: dict[str, str] = {}
    for name in images:
        file_name = _image_file_name(name)
        if file_name in file_names.values():
            raise ValueError(f"two report images would both be written as {file_name!r}")
        file_names[name] = file_name

    for name, data in images.items():
        write_bytes_atomic(out_dir / file_names[name], data)

    markdown_path = out_dir / "report.md"
    html_path = out_dir / "report.html"
    write_bytes_atomic(markdown_path, render_markdown(inputs, file_names).encode("utf-8"))
    write_bytes_atomic(html_path, render_html(inputs, images).encode("utf-8"))
    metadata_markdown = render_markdown(inputs, {LOSS_IMAGE: png_data_uri(images[LOSS_IMAGE])})
    return {
        "markdown_path": markdown_path,
        "html_path": html_path,
        "metadata_markdown": metadata_markdown,
    }
