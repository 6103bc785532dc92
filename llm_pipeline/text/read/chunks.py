"""Cutting long text into documents of bounded length, at paragraph breaks where possible."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def _cut(text: str, max_chars: int) -> int:
    """Where to end a chunk of `text` (longer than `max_chars`): a paragraph break in the second
    half of the window if there is one, else a line break, else a space, else a hard cut."""
    for separator in ("\n\n", "\n", " "):
        cut = text.rfind(separator, max_chars // 2, max_chars)
        if cut != -1:
            return cut + len(separator)
    return max_chars


def iter_chunks(blocks: Iterable[str], max_chars: int) -> Iterator[str]:
    """Re-cut a stream of text blocks into chunks of at most `max_chars` (0: one chunk).

    Only the current chunk and one block are held in memory, so a multi-GB book in a single
    file streams through. Whitespace-only chunks are dropped.
    """
    buffer = ""
    for block in blocks:
        buffer += block
        if max_chars <= 0:
            continue
        start = 0  # cut by position: re-slicing the buffer per chunk would copy it each time
        while len(buffer) - start > max_chars:
            window = buffer[start : start + max_chars]
            cut = _cut(window, max_chars)
            if window[:cut].strip():
                yield window[:cut]
            start += cut
        buffer = buffer[start:]
    if buffer.strip():
        yield buffer


def split_long_text(text: str, max_chars: int) -> list[str]:
    """Cut `text` into chunks of at most `max_chars`, at paragraph breaks where possible.

    Falls back to a line break, then a space, then a hard cut, so no chunk is ever longer than
    the limit (a book in one file still splits into many training/validation documents).
    """
    if max_chars <= 0 or len(text) <= max_chars:
        return [text]
    return list(iter_chunks([text], max_chars))
