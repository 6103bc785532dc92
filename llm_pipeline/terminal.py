"""Text shown to a terminal, with its control characters escaped.

File names, download reasons, log messages and generated text all come from files a user (or
anyone who can write into the roots, or a web server) chose. Printed raw, `ESC ] 0; … BEL`
retitles the terminal, `ESC [2J` clears it, and an OSC 52 sequence can even write to the
clipboard. So everything the `llm-pipeline` command writes to stdout and stderr goes through
`EscapingStream`: C0 and C1 control characters, DEL and the Unicode bidirectional overrides
(which reorder what is shown) become visible escapes such as `\\x1b`. Newlines and tabs are
kept; a carriage return is kept only at the very start of a write (the command's own progress
line redrawing itself), never inside the text it carries. No Dagster here.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from typing import TextIO

_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *_BIDI]
_TABLE = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _CONTROLS if c not in (9, 10)}


def escape_controls(text: str) -> str:
    """`text` with every control character but newline and tab shown as an escape."""
    return text.translate(_TABLE)


class EscapingStream(io.TextIOBase):
    """A text stream that escapes control characters before they reach `raw` (a terminal)."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw

    def write(self, text: str) -> int:
        lead = "\r" if text.startswith("\r") else ""
        self.raw.write(lead + escape_controls(text[len(lead) :]))
        return len(text)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        return self.raw.isatty()

    def fileno(self) -> int:
        return self.raw.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.raw, "encoding", "utf-8")


def unescaped(stream: TextIO) -> TextIO:
    """The terminal under an `EscapingStream`, for a display that draws with its own escapes
    (rich's progress bars) and escapes the text it shows itself."""
    return stream.raw if isinstance(stream, EscapingStream) else stream


@contextlib.contextmanager
def escaped_output() -> Iterator[None]:
    """stdout and stderr escaped for the duration (the `llm-pipeline` command's whole run)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = EscapingStream(sys.stdout), EscapingStream(sys.stderr)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        sys.stdout, sys.stderr = saved
