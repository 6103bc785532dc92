"""Report core: real matplotlib PNGs, Markdown and HTML rendering, atomic report files."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from matplotlib.image import imread

from llm_pipeline.report.plots import loss_plot_png, lr_plot_png
from llm_pipeline.report.render import (
    ReportInputs,
    png_data_uri,
    render_html,
    render_markdown,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "before ``` and ```` then <script>alert('x')</script> & after"


def make_history(n: int = 20) -> list[dict]:
    rows = []
    for step in range(1, n + 1):
        rows.append(
            {
                "step": step,
                "tokens": step * 4096,
                "train_loss": 5.0 / step**0.5,
                "val_loss": 5.2 / step**0.5 if step % 5 == 0 else None,
                "lr": 3e-4 * min(1.0, step / 5),
                "tokens_per_s": 12345.6,
                "elapsed_s": step * 0.5,
            }
        )
    return rows


def make_inputs(**overrides) -> ReportInputs:
    values = dict(
        title="tiny-shakespeare run 7",
        metrics={
            "val_loss": 1.23456789,
            "perplexity": 3.43,
            "bits_per_byte": 1.098765,
            "unigram_bits_per_byte": 4.5678,
            "tokens_seen": 12345678,
            "parameters": 812345,
            "training_seconds": 123.456,
            "tokens_per_s": 98765.4,
            "architecture": "gpt",
            "seed": 1337,
            "notes": {"not": "a scalar"},
        },
        eval_files={"holdout-a.txt": 1.2345678, "holdout-b.txt": 2.5},
        history=make_history(),
        samples=[
            {
                "prompt": "Once upon",
                "completion": "a time there was",
                "temperature": 0.8,
                "top_k": 40,
            },
            {"prompt": "Code:", "completion": EVIL, "temperature": 1.0, "top_k": None},
        ],
        comparison={
            "champion_run": "run-6",
            "champion_bpb": 1.2,
            "challenger_run": "run-7",
            "challenger_bpb": 1.098765,
            "difference": -0.101235,
            "promoted": True,
            "reason": "bits per byte improved by more than the 0.01 margin",
        },
    )
    values.update(overrides)
    return ReportInputs(**values)


def assert_png(data: bytes) -> None:
    assert data[:8] == PNG_MAGIC
    pixels = imread(io.BytesIO(data), format="png")
    height, width = pixels.shape[:2]
    # 7 x 4 inches at ~100 dpi
    assert 500 <= width <= 1000
    assert 300 <= height <= 600
    assert width > height


def test_plots_are_valid_pngs() -> None:
    history = make_history()
    assert_png(loss_plot_png(history))
    assert_png(lr_plot_png(history))


def test_plots_handle_missing_values_and_empty_history() -> None:
    no_val = [dict(row, val_loss=None) for row in make_history()]
    assert_png(loss_plot_png(no_val))
    only_val = [dict(row, train_loss=None) for row in make_history()]
    assert_png(loss_plot_png(only_val))
    assert_png(loss_plot_png([]))
    assert_png(lr_plot_png([]))


def test_markdown_has_metrics_comparison_eval_files_and_samples() -> None:
    inputs = make_inputs()
    md = render_markdown(inputs, {"loss": "loss.png"})
    assert md.startswith("# tiny-shakespeare run 7\n")
    # bits per byte comes first in the headline table, to 4 decimals
    table = md.split("## Headline metrics")[1].split("##")[0]
    first_row = [line for line in table.splitlines() if line.startswith("| ")][1]
    assert "Bits per byte" in first_row and "1.0988" in first_row
    assert "1.2346" in md  # val loss, 4 decimals
    assert "12,345,678" in md and "812,345" in md  # counts with separators
    assert "123.5 s" in md  # seconds with one decimal
    assert "98,765 tokens/s" in md
    assert "| seed | 1,337 |" in md  # extra scalar keys are rendered
    assert "a scalar" not in md  # non-scalar extras are not
    # comparison
    assert "| Champion | run-6 | 1.2000 |" in md
    assert "1.2000" in md and "-0.1012" in md
    assert "This run was promoted and replaces run-6 as champion" in md
    assert "0.01 margin" in md
    # eval files
    assert "holdout-a.txt" in md and "1.2346" in md and "2.5000" in md
    # samples and images
    assert "**Once upon**" in md and "a time there was" in md
    assert "temperature 0.8, top-k 40" in md and "top-k off" in md
    assert "![loss](loss.png)" in md


def test_markdown_fence_cannot_be_broken_by_sample() -> None:
    md = render_markdown(make_inputs(), {})
    lines = md.splitlines()
    start = lines.index(EVIL) - 1
    fence = re.fullmatch(r"(`+)text", lines[start]).group(1)
    assert len(fence) > 4  # longer than the longest backtick run (4) in the sample
    assert lines[start + 2] == fence  # the block closes right after the sample, not inside it
    # and the sample's own backtick runs are all shorter than the fence
    assert max(len(run) for run in re.findall(r"`+", EVIL)) < len(fence)


def test_markdown_escapes_markup_in_user_text() -> None:
    inputs = make_inputs(
        title="<b>bold</b> | title",
        samples=[
            {
                "prompt": "<script>x</script> *hi*",
                "completion": "ok",
                "temperature": 1.0,
                "top_k": None,
            }
        ],
    )
    md = render_markdown(inputs, {})
    assert "<script>" not in md and "<b>" not in md
    assert "\\<script\\>" in md and "\\*hi\\*" in md


def test_html_is_self_contained_and_escaped() -> None:
    inputs = make_inputs()
    loss = loss_plot_png(inputs.history)
    page = render_html(inputs, {"loss": loss})
    assert page.startswith("<!DOCTYPE html>")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "<link" not in page
    assert f'src="{png_data_uri(loss)}"' in page
    assert "data:image/png;base64," in page
    assert "1.0988" in page and "12,345,678" in page and "holdout-b.txt" in page
    assert "This run was promoted and replaces run-6 as champion" in page


def test_html_rejects_non_png_images() -> None:
    with pytest.raises(ValueError, match="funnel"):
        render_html(make_inputs(), {"funnel": b"GIF89a"})


def test_no_champion_and_no_eval_files() -> None:
    comparison = {
        "champion_run": None,
        "champion_bpb": None,
        "challenger_run": "run-1",
        "challenger_bpb": 2.0,
        "difference": None,
        "promoted": True,
        "reason": "first model for this corpus",
    }
    history = [dict(row, val_loss=None) for row in make_history()]
    inputs = make_inputs(comparison=comparison, eval_files={}, history=history, samples=[])
    md = render_markdown(inputs, {})
    page = render_html(inputs, {})
    for text in (md, page):
        assert "no champion yet" in text.lower()
        assert "There is no champion yet, so this run was promoted to champion" in text
        assert "Fixed evaluation files" not in text
    not_promoted = dict(comparison, promoted=False, reason="below quality bar")
    md = render_markdown(make_inputs(comparison=not_promoted, eval_files={}), {})
    assert "was not promoted" in md and "below quality bar" in md


def test_write_report_writes_all_files_atomically(tmp_path: Path) -> None:
    out_dir = tmp_path / "report"
    funnel = lr_plot_png(make_history(3))
    inputs = make_inputs(extra_images={"funnel": funnel})
    result = write_report(out_dir, inputs)

    names = sorted(p.name for p in out_dir.iterdir())
    assert names == ["funnel.png", "loss.png", "lr.png", "report.html", "report.md"]
    assert not list(out_dir.glob(".*"))  # no temp files left behind
    for name in ("funnel.png", "loss.png", "lr.png"):
        assert_png((out_dir / name).read_bytes())
    assert (out_dir / "funnel.png").read_bytes() == funnel

    assert result["markdown_path"] == out_dir / "report.md"
    assert result["html_path"] == out_dir / "report.html"
    md = result["markdown_path"].read_text(encoding="utf-8")
    for name in ("loss.png", "lr.png", "funnel.png"):
        assert f"]({name})" in md
    assert "data:image" not in md

    page = result["html_path"].read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 3
    assert 'src="http' not in page

    meta = result["metadata_markdown"]
    uris = re.findall(r"\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", meta)
    assert len(uris) == 1
    assert base64.b64decode(uris[0]) == (out_dir / "loss.png").read_bytes()
    assert "lr.png" not in meta and "funnel" not in meta
    assert "1.0988" in meta


def test_write_report_rewrites_in_place_and_validates_image_names(tmp_path: Path) -> None:
    write_report(tmp_path, make_inputs())
    write_report(tmp_path, make_inputs(title="second"))
    assert (tmp_path / "report.md").read_text(encoding="utf-8").startswith("# second\n")
    assert not list(tmp_path.glob(".*"))
    png = lr_plot_png([])
    with pytest.raises(ValueError, match="reserved"):
        write_report(tmp_path, make_inputs(extra_images={"loss": png}))
    with pytest.raises(ValueError, match="image name"):
        write_report(tmp_path, make_inputs(extra_images={"../escape": png}))
    with pytest.raises(ValueError, match="not PNG"):
        write_report(tmp_path, make_inputs(extra_images={"funnel": b"not a png"}))
    assert not (tmp_path.parent / "escape.png").exists()
