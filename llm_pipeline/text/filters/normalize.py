"""Unicode and whitespace normalisation applied to every document before filtering.

The same text must always normalise to the same string, because the exact-dedup hash and the
document id are computed on the result.
"""

from __future__ import annotations

import re
import unicodedata

# C0 and C1 control characters except \t and \n, plus the BOM / zero-width no-break space.
# Shared with the great-expectations check so the rule and its guard cannot drift apart.
CONTROL_CHARS_REGEX = r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff]"
_CONTROL = re.compile(CONTROL_CHARS_REGEX)
_NEWLINES = re.compile(r"\r\n?|[\u2028\u2029\x85]")
_BLANK_RUNS = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC, `\\n` newlines, no control characters, no trailing whitespace, ≤ 1 blank line in a row.

    Leading indentation is kept (code and verse depend on it); leading blank lines are dropped.
    Trailing whitespace is stripped line by line rather than with a regex, which would be
    quadratic on long runs of spaces.
    """
    ascii_only = text.isascii()
    if not ascii_only and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    # Each step is skipped when a cheap substring test proves it would change nothing; most
    # documents need few of them, and `in` runs at memchr speed where a regex scan does not.
    if "\r" in text or not ascii_only:
        text = _NEWLINES.sub("\n", text)
    if _CONTROL.search(text):
        text = _CONTROL.sub("", text)
    if not ascii_only or " \n" in text or "\t\n" in text:
        text = "\n".join([line.rstrip() for line in text.split("\n")])
    if "\n\n\n" in text:
        text = _BLANK_RUNS.sub("\n\n", text)
    return text.lstrip("\n").rstrip()
