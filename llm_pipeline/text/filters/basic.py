"""The document-filter protocol and the basic filters (length, words, symbols, repeated lines).

One protocol, datatrove's: every filter is a small named unit with its thresholds as documented
parameters and one method, `filter(text) -> (kept, reason)`. The reason is the finer cause inside
the filter (a Gopher filter has one per rule; a single-rule filter answers its own `name`). The
filters never count anything themselves: the pass that runs them (`filter_batch` in
`filter_pass.py`, into a `funnel.Tally`) counts every dropped document, its bytes and its reason
under the filter's `name`, in one place, so the funnel says exactly which rule removed what.

A step that edits the text (C4 line cleaning removes lines, and may then drop the document) is a
`TextTransform`: it still answers `filter`, and also `transform(text) -> Transformed`, the new
text. It declares itself with `edits_text = True` instead of being discovered by `hasattr`; this
is datatrove's split between filters (decide) and formatters (edit), joined for the one step that
does both, as datatrove's own C4 filter does.

A threshold of 0 (or 1.0 for fractions) disables a filter.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

_WORDS = re.compile(r"\S+")

# The answer of a filter that keeps the document (one shared tuple, no allocation per call).
KEPT: tuple[bool, None] = (True, None)


class DocumentFilter:
    """A rule that keeps or drops one normalised document.

    Subclasses set `name` (the funnel step) and implement `filter`; they are frozen dataclasses
    whose fields are the thresholds, so a profile or an override can replace any of them. A
    filter runs once it is listed in `registry.FILTERS`.
    """

    name: str
    # Steps that rewrite the text set this (see `TextTransform`); read once per batch.
    edits_text: ClassVar[bool] = False

    def filter(self, text: str) -> tuple[bool, str | None]:
        """`(True, None)` to keep `text`, `(False, reason)` to drop it."""
        raise NotImplementedError


class Transformed(NamedTuple):
    """What a `TextTransform` made of one document: its new text (the same object when nothing
    changed; None when the whole document is dropped), the reason for a drop, and how many lines
    it removed (reported in the funnel as `lines_removed`)."""

    text: str | None
    reason: str | None
    lines_removed: int = 0


class TextTransform(DocumentFilter):
    """A step that edits a document's text and may drop it (C4 line cleaning).

    `transform` is the one method to implement; `filter` is derived from it, so a transform can
    stand wherever a filter does. `filter_batch` calls `transform`, since it needs the new text.
    """

    edits_text: ClassVar[bool] = True

    def transform(self, text: str) -> Transformed:
        raise NotImplementedError

    def filter(self, text: str) -> tuple[bool, str | None]:
        result = self.transform(text)
        return KEPT if result.text is not None else (False, result.reason)


def parameter(doc: str, *, ge: float | None = None, le: float | None = None, **default: Any) -> Any:
    """A filter threshold with its description and bounds: a plain filter's parameter is a
    `cleaned_corpus` setting of the same name (text/filters/registry.py derives it from here).
    Pass `default=` for a threshold that profiles need not name."""
    return dataclasses.field(metadata={"doc": doc, "ge": ge, "le": le}, **default)


_last_split: list = [None, None]


def split_words(text: str) -> list[str]:
    """`text.split()`, remembered for the last text: the filters that run one after another on
    the same document share one split instead of paying for it each."""
    if _last_split[0] is not text:
        _last_split[0], _last_split[1] = text, text.split()
    return _last_split[1]


@dataclass(frozen=True)
class EmptyFilter(DocumentFilter):
    """Drop documents with no visible character left after normalisation. Always on: an empty
    document carries nothing, and turning the length filters off must not let one through."""

    name: str = "empty"

    def filter(self, text: str) -> tuple[bool, str | None]:
        return KEPT if text and not text.isspace() else (False, self.name)


@dataclass(frozen=True)
class MinCharsFilter(DocumentFilter):
    """Drop documents shorter than `min_chars` characters (fragments carry no signal)."""

    min_chars: int = parameter("Drop shorter documents.", ge=0)
    name: str = "min_chars"

    def filter(self, text: str) -> tuple[bool, str | None]:
        return KEPT if len(text) >= self.min_chars else (False, self.name)


@dataclass(frozen=True)
class MaxCharsFilter(DocumentFilter):
    """Drop documents longer than `max_chars` characters (dumps, minified data)."""

    max_chars: int = parameter("Drop longer documents.", ge=0)
    name: str = "max_chars"

    def filter(self, text: str) -> tuple[bool, str | None]:
        if self.max_chars <= 0 or len(text) <= self.max_chars:
            return KEPT
        return False, self.name


@dataclass(frozen=True)
class MinWordsFilter(DocumentFilter):
    """Drop documents with fewer than `min_words` whitespace-separated words."""

    min_words: int = parameter("Drop documents with fewer.", ge=0)
    name: str = "min_words"

    def filter(self, text: str) -> tuple[bool, str | None]:
        if self.min_words <= 0:
            return KEPT
        # Counting stops as soon as the minimum is reached; long documents cost nothing.
        for count, _ in enumerate(_WORDS.finditer(text), start=1):
            if count >= self.min_words:
                return KEPT
        return False, self.name


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
class NonAlnumFractionFilter(DocumentFilter):
    """Drop documents whose visible characters are mostly symbols (tables of punctuation, binary
    junk decoded as text). Code and docs sit well below the default of 0.5."""

    max_non_alnum_fraction: float = parameter(
        "Drop documents that are mostly symbols.", ge=0.0, le=1.0
    )
    name: str = "non_alnum_fraction"

    def filter(self, text: str) -> tuple[bool, str | None]:
        limit = self.max_non_alnum_fraction
        if limit >= 1.0 or non_alnum_fraction(text) <= limit:
            return KEPT
        return False, self.name


def duplicate_line_fraction(text: str) -> float:
    """Fraction of non-empty lines that repeat an earlier line of the same document."""
    lines = [line for line in text.split("\n") if line]
    if not lines:
        return 0.0
    return 1.0 - len(set(lines)) / len(lines)


@dataclass(frozen=True)
class DuplicateLinesFilter(DocumentFilter):
    """Drop documents that mostly repeat themselves (boilerplate, spam, logs)."""

    max_duplicate_line_fraction: float = parameter(
        "Drop documents with more repeated lines.", ge=0.0, le=1.0
    )
    name: str = "duplicate_lines"

    def filter(self, text: str) -> tuple[bool, str | None]:
        limit = self.max_duplicate_line_fraction
        if limit >= 1.0 or duplicate_line_fraction(text) <= limit:
            return KEPT
        return False, self.name
