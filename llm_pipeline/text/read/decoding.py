"""Decode a text file without losing it to a few stray bytes.

A book that is valid UTF-8 except for three bytes (a copy-paste from an old editor, a truncated
download joined to another) is worth keeping: the bad bytes become U+FFFD and are counted, the
first one's byte offset goes in the log. A file that is *mostly* not UTF-8 (Windows-1252 accents
and curly quotes, Latin-1, Shift-JIS) is not a UTF-8 file with errors: it is decoded in the
encoding `charset-normalizer` detects, when the detection is confident, and skipped with a named
reason when it is not. Policy `skip` (setting `raw_corpus.encoding_errors`) keeps the strict
behaviour: any file that is not valid UTF-8 is skipped whole.

Two streaming passes, so memory stays bounded by the block size: `scan_text` reads the file once
to decide (and to refuse binary or empty files before anything is yielded), `DecodedText.blocks`
reads it again to yield the text.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO

ENCODING_POLICIES = ("replace", "skip")
# More invalid sequences than this share of (invalid + valid non-ASCII characters): the file is
# in another encoding, not UTF-8 with a few stray bytes.
MOSTLY_INVALID = 0.5
DETECTION_SAMPLE_BYTES = 1 << 20
_BLOCK = 1 << 20
_NAMES = {"utf-8-sig": "UTF-8", "utf-8": "UTF-8", "utf-16": "UTF-16", "utf-32": "UTF-32"}


class UndecodableText(Exception):
    """The file cannot be used as text; the message is the reason (binary, empty, encoding)."""


Opener = Callable[[], IO[bytes]]


class CountingUtf8Decoder:
    """An incremental UTF-8 decoder that replaces invalid bytes with U+FFFD and counts them.

    Python's own `errors="replace"` cannot say how many bytes it replaced or where; this one keeps
    the count of replaced bytes and the file offset of the first. It is linear in its input: the
    codec calls `_count_and_replace` for each invalid span and goes on in place (restarting a
    strict decoder on the rest of the block after each bad byte copied that rest every time, so
    a block of invalid bytes cost its length squared: 1 MB of 0xFF took minutes).
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors=_COUNTING_ERRORS)
        self._fed = 0  # bytes fed so far
        self._at_start = True  # a byte-order mark may still come
        self._call_base = 0  # file offset of the first byte the codec sees in this call
        self.replaced_bytes = 0
        self.replacements = 0  # spans replaced, one U+FFFD each
        self.first_offset: int | None = None

    def decode(self, data: bytes, final: bool = False) -> str:
        self._call_base = self._fed - len(self._decoder.getstate()[0])
        token = _ACTIVE.set(self)
        try:
            text = self._decoder.decode(data, final=final)
        finally:
            _ACTIVE.reset(token)
        self._fed += len(data)
        if self._at_start and text:
            self._at_start = False
            if text.startswith("\ufeff"):  # the BOM of a UTF-8 file, not text
                text = text[1:]
        return text

    def _record(self, exc: UnicodeDecodeError) -> None:
        if self.first_offset is None:
            self.first_offset = self._call_base + exc.start
        self.replaced_bytes += exc.end - exc.start
        self.replacements += 1


# The decoder whose codec call is running (decoding is synchronous: one per thread/context).
_ACTIVE: ContextVar[CountingUtf8Decoder] = ContextVar("counting_utf8_decoder")
_COUNTING_ERRORS = "llm_pipeline.counting_replace"


def _count_and_replace(exc: UnicodeError) -> tuple[str, int]:
    """The codec error handler: count the span on the running decoder, replace it, go on."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _ACTIVE.get()._record(exc)
    return "\ufffd", exc.end


codecs.register_error(_COUNTING_ERRORS, _count_and_replace)


@dataclass
class DecodedText:
    """How a text file is decoded, and what decoding it changed."""

    opener: Opener
    encoding: str
    replaced_bytes: int = 0
    first_bad_offset: int | None = None
    detected: bool = False  # the encoding came from charset-normalizer, not from UTF-8/BOM

    def blocks(self) -> Iterator[str]:
        """The file's text in blocks (second pass)."""
        if self.encoding == "utf-8-sig":
            decoder = CountingUtf8Decoder()
            yield from _blocks(self.opener, decoder.decode)
        else:
            incremental = codecs.getincrementaldecoder(self.encoding)(errors="replace")
            yield from _blocks(self.opener, incremental.decode)

    def note(self, source: str) -> str | None:
        """The log line for this file, or None when it was plain valid text."""
        if self.detected:
            return f"{source}: not UTF-8; decoded as {self.encoding} (detected)"
        if self.replaced_bytes:
            return (
                f"{source}: {self.replaced_bytes} invalid UTF-8 byte(s) replaced by U+FFFD "
                f"(first at byte {self.first_bad_offset})"
            )
        return None


def _blocks(opener: Opener, decode: Callable[..., str]) -> Iterator[str]:
    with opener() as fh:
        while True:
            block = fh.read(_BLOCK)
            text = decode(block, final=not block)
            if text:
                yield text
            if not block:
                return


def _check_blocks(blocks: Iterator[str]) -> None:
    has_text = False
    for block in blocks:
        if "\0" in block:  # NULs after the first 8 KiB, or in UTF-16 text: binary all the same
            raise UndecodableText("binary file (contains NUL characters)")
        has_text = has_text or bool(block.strip())
    if not has_text:
        raise UndecodableText("empty file")


def _strict_blocks(opener: Opener, encoding: str) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    with opener() as fh:
        while True:
            block = fh.read(_BLOCK)
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                position = offset - (len(exc.object) - len(block)) + exc.start
                raise UndecodableText(
                    f"not valid {_NAMES.get(encoding, encoding)} "
                    f"(byte {position}: {exc.object[exc.start : exc.start + 4]!r})"
                ) from None
            if text:
                yield text
            if not block:
                return
            offset += len(block)


def detect_encoding(sample: bytes) -> str | None:
    """The encoding charset-normalizer is confident about for `sample`, or None.

    Among its candidates (all within its default chaos threshold) Windows-1252 wins when present:
    it is by far the most common non-UTF-8 encoding of Western text, and charset-normalizer's
    ranking among the single-byte Latin code pages is noisy (it ranks cp1257 first for plain
    French with curly quotes, turning "à" into "ą").
    """
    from charset_normalizer import from_bytes

    matches = list(from_bytes(sample))
    if not matches:
        return None
    for match in matches:
        if match.encoding == "cp1252":
            return "cp1252"
    return matches[0].encoding


def scan_text(opener: Opener, bom_encoding: str, policy: str = "replace") -> DecodedText:
    """First pass: decide how to decode the file, refusing binary, empty or undecodable ones.

    `bom_encoding` is what the byte-order mark says (`utf-8-sig` when there is none).
    """
    if policy not in ENCODING_POLICIES:
        raise ValueError(f"encoding_errors={policy!r}: expected one of {ENCODING_POLICIES}")
    if bom_encoding != "utf-8-sig" or policy == "skip":
        _check_blocks(_strict_blocks(opener, bom_encoding))
        return DecodedText(opener, bom_encoding)
    decoder = CountingUtf8Decoder()
    non_ascii = 0

    def counted() -> Iterator[str]:
        nonlocal non_ascii
        for block in _blocks(opener, decoder.decode):
            non_ascii += len(block) - len(block.encode("ascii", "ignore"))
            yield block

    _check_blocks(counted())
    if not decoder.replaced_bytes:
        return DecodedText(opener, "utf-8-sig")
    valid_non_ascii = non_ascii - decoder.replacements  # each replaced span became one U+FFFD
    if decoder.replacements <= MOSTLY_INVALID * (decoder.replacements + valid_non_ascii):
        return DecodedText(opener, "utf-8-sig", decoder.replaced_bytes, decoder.first_offset)
    with opener() as fh:
        sample = fh.read(DETECTION_SAMPLE_BYTES)
    encoding = detect_encoding(sample)
    if encoding is None:
        raise UndecodableText(
            f"not valid UTF-8 ({decoder.replaced_bytes} invalid bytes, first at byte "
            f"{decoder.first_offset}) and no other encoding detected with confidence"
        )
    return DecodedText(opener, encoding, detected=True)


def replacement_count(text: str) -> int:
    """U+FFFD characters in `text` (for lines decoded with `errors="replace"`)."""
    return text.count("\ufffd")
