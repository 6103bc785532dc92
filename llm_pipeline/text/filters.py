"""Document filters: each a small named unit with its threshold as a documented parameter.

Following datatrove's shape, every filter answers `keep(text)` and the cleaning loop counts each
dropped document under the filter's `name`, so the metadata says exactly which rule removed what.
A threshold of 0 (or 1.0 for fractions) disables a filter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

_WORDS = re.compile(r"\S+")


class DocumentFilter(Protocol):
    """A rule that keeps or drops one normalised document."""

    name: str

    def keep(self, text: str) -> bool: ...


@dataclass(frozen=True)
class EmptyFilter:
    """Drop documents with no visible character left after normalisation. Always on: an empty
    document carries nothing, and turning the length filters off must not let one through."""

    name: str = "empty"

    def keep(self, text: str) -> bool:
        return bool(text) and not text.isspace()


@dataclass(frozen=True)
class MinCharsFilter:
    """Drop documents shorter than `min_chars` characters (fragments carry no signal)."""

    min_chars: int
    name: str = "min_chars"

    def keep(self, text: str) -> bool:
        return len(text) >= self.min_chars


@dataclass(frozen=True)
class MaxCharsFilter:
    """Drop documents longer than `max_chars` characters (dumps, minified data)."""

    max_chars: int
    name: str = "max_chars"

    def keep(self, text: str) -> bool:
        return self.max_chars <= 0 or len(text) <= self.max_chars


@dataclass(frozen=True)
class MinWordsFilter:
    """Drop documents with fewer than `min_words` whitespace-separated words."""

    min_words: int
    name: str = "min_words"

    def keep(self, text: str) -> bool:
        if self.min_words <= 0:
            return True
        # Counting stops as soon as the minimum is reached; long documents cost nothing.
        for count, _ in enumerate(_WORDS.finditer(text), start=1):
            if count >= self.min_words:
                return True
        return False


# ASCII bytes that str.isspace() / str.isalnum() accept; deleting them with bytes.translate and
# comparing lengths counts them at memcpy speed, where a regex findall allocates per match.
_ASCII_SPACE = bytes(c for c in range(128) if chr(c).isspace())
_ASCII_ALNUM = bytes(c for c in range(128) if chr(c).isalnum())
_NON_ASCII_RUNS = re.compile(r"[^\x00-\x7f]+")


def non_alnum_fraction(text: str) -> float:
    """Fraction of non-whitespace characters that are neither letters nor digits (Unicode-aware).

    ASCII is counted on the UTF-8 bytes (multi-byte characters never contain ASCII bytes); the
    usually few non-ASCII characters are classified one by one.
    """
    data = text.encode("utf-8")
    spaces = len(data) - len(data.translate(None, _ASCII_SPACE))
    alnum = len(data) - len(data.translate(None, _ASCII_ALNUM))
    if not text.isascii():
        for run in _NON_ASCII_RUNS.findall(text):
            for char in run:
                if char.isalnum():
                    alnum += 1
                elif char.isspace():
                    spaces += 1
    visible = len(text) - spaces
    if visible == 0:
        return 1.0
    return 1.0 - alnum / visible


@dataclass(frozen=True)
class NonAlnumFractionFilter:
    """Drop documents whose visible characters are mostly symbols (tables of punctuation, binary
    junk decoded as text). Code and docs sit well below the default of 0.5."""

    max_fraction: float
    name: str = "non_alnum_fraction"

    def keep(self, text: str) -> bool:
        return self.max_fraction >= 1.0 or non_alnum_fraction(text) <= self.max_fraction


def duplicate_line_fraction(text: str) -> float:
    """Fraction of non-empty lines that repeat an earlier line of the same document."""
    lines = [line for line in text.split("\n") if line]
    if not lines:
        return 0.0
    return 1.0 - len(set(lines)) / len(lines)


@dataclass(frozen=True)
class DuplicateLinesFilter:
    """Drop documents that mostly repeat themselves (boilerplate, spam, logs)."""

    max_fraction: float
    name: str = "duplicate_lines"

    def keep(self, text: str) -> bool:
        return self.max_fraction >= 1.0 or duplicate_line_fraction(text) <= self.max_fraction
