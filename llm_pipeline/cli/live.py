"""What `materialize` and `run` show while a run goes: the run's log, live, from the instance.

`execute_in_process` only returns when the run is over, so a thread follows the run's event log
in the Dagster instance (the same records the UI shows) and hands each log message to a display:

- in a terminal, `rich` draws one live progress bar per stage (the `progress ...` lines of
  `llm_pipeline.progress`, parsed back) and prints every other message above the bars;
- otherwise (CI, a pipe, a file), plain lines, one per message, so logs stay readable.
"""

from __future__ import annotations

import sys
import threading
from typing import IO, Any

from llm_pipeline.progress import parse_line
from llm_pipeline.terminal import escape_controls, unescaped

POLL_SECONDS = 0.5
# Dagster's line for each step left out after a failure upstream: one per step and check, so a
# failed first stage would print a screenful of them above the one line that matters.
SKIPPED_PREFIX = "Dependencies for step"
_LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


class PlainDisplay:
    """One line per message: `[step] message` (progress lines included, as they are)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()

    def message(self, step: str | None, level: int, text: str) -> None:
        prefix = f"[{step}] " if step else ""
        tag = "" if level <= 20 else f"{_LEVELS.get(level, level)}: "
        print(f"{prefix}{tag}{text}", file=self.stream, flush=True)


class LiveDisplay:
    """A `rich` progress bar per stage; other messages are printed above the bars."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        # rich draws with escapes of its own: it writes to the terminal itself, and every text
        # it shows is escaped here (`message`).
        self.console = Console(file=unescaped(stream or sys.stderr))
        self.progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> LiveDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def message(self, step: str | None, level: int, text: str) -> None:
        text, step = escape_controls(text), step and escape_controls(step)
        line = parse_line(text)
        if line is None:
            style = "" if level <= 20 else ("yellow" if level == 30 else "red")
            prefix = f"[{step}] " if step else ""
            self.progress.console.print(
                f"{prefix}{text}", style=style, markup=False, highlight=False
            )
            return
        task = self.tasks.get(line.label)
        if task is None:
            task = self.progress.add_task(line.label, total=100.0, detail="")
            self.tasks[line.label] = task
        if line.done:
            self.progress.update(task, completed=100.0, detail=line.text)
        else:
            completed = line.percent if line.percent is not None else 0.0
            self.progress.update(task, completed=completed, detail=line.text)


def make_display(stream: IO[str] | None = None) -> PlainDisplay | LiveDisplay:
    """The live display when `stream` (default stderr) is a terminal, plain lines otherwise."""
    stream = stream or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return LiveDisplay(stream)
    return PlainDisplay(stream)


class RunFollower:
    """Follows one run's log messages in the instance on a thread, until `stop`."""

    def __init__(self, instance: Any, run_id: str, display: PlainDisplay | LiveDisplay) -> None:
        self.instance = instance
        self.run_id = run_id
        self.display = display
        self.cursor: str | None = None
        self.skipped: list[str] = []  # steps not run because a dependency failed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-follower", daemon=True)

    def __enter__(self) -> RunFollower:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # whatever arrived after the last poll

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.poll()
            except Exception:
                continue

    def poll(self) -> None:
        """Show the user log messages (context.log) recorded since the last poll."""
        while True:
            connection = self.instance.get_records_for_run(
                self.run_id, cursor=self.cursor, limit=500
            )
            for record in connection.records:
                entry = record.event_log_entry
                if entry.is_dagster_event or entry.level < 20:
                    continue
                if entry.user_message.startswith(SKIPPED_PREFIX):
                    # Shown once, after the failure that caused them (cli/failures.py).
                    self.skipped.append(entry.step_key or "")
                    continue
                self.display.message(entry.step_key, entry.level, entry.user_message)
            self.cursor = connection.cursor
            if not connection.has_more:
                return
