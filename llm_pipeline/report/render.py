"""The evaluation report of a trained model, as Markdown and as a self-contained HTML page.

Markdown is what Dagster shows on the asset page and what reads well in a repository; HTML is the
file a user opens or mails around, so it embeds its images and carries no external resources.
Both are built directly from `ReportInputs` (no Markdown library), so each format escapes user
text its own way: generated samples are arbitrary text and must never be able to break out of
their code block or inject markup.

This module writes the files; what they say is `content.py`, laid out by `markdown.py` and
`html_page.py`. The report's public names are all importable from here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from llm_pipeline.atomic import write_bytes_atomic
from llm_pipeline.report.content import (
    ReportInputs,
    check_png,
    funnel_rows,
    png_data_uri,
)
from llm_pipeline.report.html_page import render_html
from llm_pipeline.report.markdown import render_markdown
from llm_pipeline.report.plots import funnel_plot_png, loss_plot_png, lr_plot_png

__all__ = [
    "FUNNEL_IMAGE",
    "LOSS_IMAGE",
    "LR_IMAGE",
    "ReportInputs",
    "png_data_uri",
    "render_html",
    "render_markdown",
    "write_report",
]

LOSS_IMAGE = "loss"
LR_IMAGE = "lr"
FUNNEL_IMAGE = "cleaning_funnel"
_IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
    if funnel_rows(inputs.cleaning):
        cleaning = inputs.cleaning or {}
        images[FUNNEL_IMAGE] = funnel_plot_png(
            cleaning["funnel"], int(cleaning.get("docs_in", 0)), int(cleaning.get("bytes_in", 0))
        )
    for name, data in inputs.extra_images.items():
        if name in images:
            raise ValueError(f"report image name {name!r} is reserved for a built-in plot")
        check_png(name, data)
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
