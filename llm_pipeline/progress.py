"""Progress of a long data stage: documents and bytes done of a known total, rate, percent, ETA.

The core stages (reading, cleaning, BPE training, encoding) take an optional `Progress` and call
`advance(docs, nbytes)` once per batch; the reporter decides when a line is due (every `every_s`
seconds or `every_pct` percent, whichever comes first) and hands it to `emit` — in a Dagster run
that is `context.log.info`, so the lines land in the run log and, through the CLI's logger, in
the terminal. Worker processes never report themselves: their counts come back with each batch
result and the stage advances one reporter. Checking the cadence is one clock read per batch,
so reporting costs nothing measurable (see `benchmarks/clean.py --progress`).

Every line starts with `PROGRESS_PREFIX` and the label and has a fixed shape, so a terminal
display can parse it back (`parse_line`) without a second channel:

    progress cleaned_corpus/filter: 41.7% 12,000 docs 52.1 MB of 125.0 MB, 9.8 MB/s, ETA 7 s
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

# The cadence, overridable from the environment so tests (and impatient users) can shorten it.
EVERY_S_ENV = "LLM_PIPELINE_PROGRESS_EVERY_S"
EVERY_PCT_ENV = "LLM_PIPELINE_PROGRESS_EVERY_PCT"
DEFAULT_EVERY_S = 5.0
DEFAULT_EVERY_PCT = 5.0
PROGRESS_PREFIX = "progress "

Emit = Callable[[str], None]


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from None
    if value < 0:
        raise ValueError(f"environment variable {name}={raw!r} must be ≥ 0")
    return value


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:,.1f} MB"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Counts one pass over `total_bytes` of input and emits a line at a steady cadence.

    `every_s` / `every_pct` default to the environment (`LLM_PIPELINE_PROGRESS_EVERY_S`,
    `LLM_PIPELINE_PROGRESS_EVERY_PCT`), else 5 s / 5 %; 0 turns that trigger off. A total of 0
    (unknown) reports counts and rate without percent or ETA. `emit=None` counts silently.
    """

    def __init__(
        self,
        total_bytes: int,
        label: str,
        emit: Emit | None,
        every_s: float | None = None,
        every_pct: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total_bytes = max(0, int(total_bytes))
        self.label = label
        self.emit = emit
        self.every_s = _env_float(EVERY_S_ENV, DEFAULT_EVERY_S) if every_s is None else every_s
        self.every_pct = (
            _env_float(EVERY_PCT_ENV, DEFAULT_EVERY_PCT) if every_pct is None else every_pct
        )
        self.clock = clock
        self.docs = 0
        self.bytes = 0
        self.started = clock()
        self.lines = 0
        self._next_time = self.started + self.every_s if self.every_s > 0 else float("inf")
        self._next_bytes = self._pct_step() if self.every_pct > 0 else float("inf")

    def _pct_step(self) -> float:
        return self.total_bytes * self.every_pct / 100 if self.total_bytes else float("inf")

    def advance(self, docs: int, nbytes: int) -> None:
        """Count one batch; emit a line when the time or percent step is reached."""
        self.docs += docs
        self.bytes += nbytes
        if self.emit is None:
            return
        if self.bytes >= self._next_bytes or self.clock() >= self._next_time:
            self._report()

    def _report(self) -> None:
        now = self.clock()
        if self.every_s > 0:
            self._next_time = now + self.every_s
        if self.every_pct > 0 and self.total_bytes:
            step = self._pct_step()
            self._next_bytes = (self.bytes // step + 1) * step
        self.lines += 1
        assert self.emit is not None
        self.emit(self.line(now))

    def fraction(self) -> float | None:
        """Share of the total done (capped below 1 until `finish`), or None if unknown."""
        if not self.total_bytes:
            return None
        return min(self.bytes / self.total_bytes, 0.999)

    def line(self, now: float | None = None) -> str:
        """The current state as one line (see the module docstring for its shape)."""
        now = self.clock() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        rate = self.bytes / elapsed
        fraction = self.fraction()
        head = f"{PROGRESS_PREFIX}{self.label}: "
        counts = f"{self.docs:,} docs {_mb(self.bytes)}"
        if fraction is None:
            return f"{head}{counts}, {_mb(rate)}/s, {_duration(elapsed)}"
        eta = (self.total_bytes - self.bytes) / rate if rate > 0 else 0.0
        return (
            f"{head}{100 * fraction:.1f}% {counts} of {_mb(self.total_bytes)}, "
            f"{_mb(rate)}/s, ETA {_duration(eta)}"
        )

    def finish(self) -> None:
        """Emit the final line: everything done, the time it took and the mean rate."""
        if self.emit is None:
            return
        elapsed = max(self.clock() - self.started, 1e-9)
        self.emit(
            f"{PROGRESS_PREFIX}{self.label}: done, {self.docs:,} docs {_mb(self.bytes)} "
            f"in {_duration(elapsed)} ({_mb(self.bytes / elapsed)}/s)"
        )


@dataclass(frozen=True)
class ProgressLine:
    """A progress line read back: which stage, how far (None if unknown or done), the text."""

    label: str
    percent: float | None
    done: bool
    text: str


_LINE = re.compile(r"^progress (?P<label>[\w./-]+): (?:(?P<pct>\d+(?:\.\d+)?)% )?(?P<rest>.*)$")


def parse_line(message: str) -> ProgressLine | None:
    """The `ProgressLine` in a log message, or None when it is not a progress line."""
    match = _LINE.match(message.strip())
    if match is None:
        return None
    pct = match.group("pct")
    rest = match.group("rest")
    return ProgressLine(
        label=match.group("label"),
        percent=float(pct) if pct is not None else None,
        done=rest.startswith("done"),
        text=rest,
    )


def batch_size_for(n_docs: int, largest: int, smallest: int = 64, batches: int = 50) -> int:
    """A batch size that gives a small corpus about `batches` batches (so its progress moves in
    steps, not one jump), never above `largest` (the stage's throughput-tuned size) nor below
    `smallest`. Outputs never depend on it: every stage's output order is batch-independent."""
    return max(smallest, min(largest, n_docs // batches))
