"""Training-curve plots as PNG bytes.

Figures are built with `matplotlib.figure.Figure` on an explicit Agg canvas rather than through
pyplot: pyplot keeps global state (current figure, selected backend) that is shared with anyone
else in the process and is not thread-safe, and it may try to open a display. An explicit canvas
needs neither, so plotting is safe inside a Dagster run worker or a headless server.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

FIGSIZE_IN = (7.0, 4.0)
DPI = 100


def _new_figure() -> tuple[Figure, Any]:
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)  # attaches itself to fig; nothing global is touched
    ax = fig.add_subplot(1, 1, 1)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # No "Software" tag, so identical inputs give identical bytes whatever matplotlib wrote them.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _no_data(ax: Any) -> None:
    """Say so on the plot instead of failing: a report for a run with no logged rows is valid."""
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, alpha=0.6)


def loss_plot_png(history: Sequence[dict[str, Any]]) -> bytes:
    """Train and validation loss against tokens seen, as PNG bytes.

    Tokens (not steps) are the x axis so runs with different batch sizes or context lengths can be
    compared by eye. Validation is evaluated only every few steps, so each series keeps just the
    rows where its value is present rather than plotting gaps as zeros.
    """
    fig, ax = _new_figure()
    train = [(r["tokens"], r["train_loss"]) for r in history if r.get("train_loss") is not None]
    val = [(r["tokens"], r["val_loss"]) for r in history if r.get("val_loss") is not None]
    if train:
        xs, ys = zip(*train)
        ax.plot(xs, ys, label="train loss", linewidth=1.2)
    if val:
        xs, ys = zip(*val)
        ax.plot(xs, ys, label="validation loss", marker="o", markersize=3, linewidth=1.5)
    if train or val:
        ax.legend()
    else:
        _no_data(ax)
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("Loss")
    fig.tight_layout()
    return _to_png(fig)


def lr_plot_png(history: Sequence[dict[str, Any]]) -> bytes:
    """Learning rate against optimizer step, as PNG bytes: shows warmup and decay at a glance."""
    fig, ax = _new_figure()
    points = [(r["step"], r["lr"]) for r in history if r.get("lr") is not None]
    if points:
        xs, ys = zip(*points)
        ax.plot(xs, ys, linewidth=1.5)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    else:
        _no_data(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title("Learning rate")
    fig.tight_layout()
    return _to_png(fig)


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:,.2f} MB" if n_bytes >= 100_000 else f"{n_bytes / 1e3:,.1f} kB"


def funnel_plot_png(funnel: Sequence[dict[str, Any]], docs_in: int, bytes_in: int) -> bytes:
    """The cleaning funnel as PNG bytes: documents left after each step as bars, each labelled
    with the documents and bytes that step removed, so the costliest rule stands out.

    `funnel` rows are `{"step", "docs_removed", "bytes_removed", "docs_left", "bytes_left"}`
    in the order the steps ran (see `CleaningStats.build_funnel`).
    """
    rows = list(funnel)
    height = max(FIGSIZE_IN[1], 0.9 + 0.32 * (len(rows) + 1))
    fig = Figure(figsize=(FIGSIZE_IN[0] + 1.5, height), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.grid(True, axis="x", alpha=0.3)
    if not rows or docs_in <= 0:
        _no_data(ax)
    else:
        labels = ["input", *(r["step"] for r in rows)]
        left = [docs_in, *(r["docs_left"] for r in rows)]
        positions = list(range(len(labels)))[::-1]
        colors = ["#4c72b0"] + ["#dd8452" if r["docs_removed"] else "#8c8c8c" for r in rows]
        ax.barh(positions, left, color=colors, height=0.7)
        ax.set_yticks(positions, labels)
        notes = [f"{docs_in:,} docs, {_size(bytes_in)}"]
        for r in rows:
            notes.append(
                f"−{r['docs_removed']:,} docs, −{_size(r['bytes_removed'])}"
                if r["docs_removed"] or r["bytes_removed"]
                else "nothing removed"
            )
        for y, value, note in zip(positions, left, notes):
            ax.text(value, y, "  " + note, va="center", fontsize=8)
        ax.set_xlim(0, docs_in * 1.55)
        ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel("documents left")
    ax.set_title("Cleaning funnel")
    fig.tight_layout()
    return _to_png(fig)


def history_points(models: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    """(trained_at, bits per byte) of each model, oldest first: what the history plot draws,
    one point per model."""
    return sorted((float(m["trained_at"]), float(m["val_bits_per_byte"])) for m in models)


def model_history_png(models: Sequence[dict[str, Any]], this_run: str | None = None) -> bytes:
    """Validation bits per byte of every model of the corpus against when it was trained, as
    PNG bytes: the champion marked with a star, this run circled in red, so a reader sees at a
    glance whether the corpus's models are getting better and where this one stands.

    `models` rows are `{"run_id", "trained_at" (epoch s), "val_bits_per_byte", "champion"}`
    (see `lm/store/history.py`). Bits per byte of models trained on different text are still
    comparable per byte, though not like for like.
    """
    from datetime import datetime, timezone

    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    fig, ax = _new_figure()
    rows = sorted(models, key=lambda m: float(m["trained_at"]))
    if not rows:
        _no_data(ax)
    else:
        xs = [datetime.fromtimestamp(float(m["trained_at"]), tz=timezone.utc) for m in rows]
        ys = [float(m["val_bits_per_byte"]) for m in rows]
        ax.plot(xs, ys, color="#4c72b0", linewidth=1, marker="o", markersize=5, label="models")
        for x, y, m in zip(xs, ys, rows):
            if m.get("champion"):
                ax.plot([x], [y], marker="*", markersize=16, color="#dd8452", linestyle="none",
                        label="champion")  # fmt: skip
            if this_run is not None and m.get("run_id") == this_run:
                ax.plot([x], [y], marker="o", markersize=12, markerfacecolor="none",
                        markeredgecolor="#c44e52", markeredgewidth=2, linestyle="none",
                        label="this run")  # fmt: skip
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.legend()
    ax.set_xlabel("trained (UTC)")
    ax.set_ylabel("validation bits per byte")
    ax.set_title("Model history (lower is better)")
    fig.tight_layout()
    return _to_png(fig)
