"""Caps on untrusted corpus input, and one pass over an opened corpus file.

A corpus file is opened once (`corpus_files.open_corpus_file`); each pass over it reads a
duplicate of that descriptor, decompressed and capped here. The caps are the `raw_corpus`
settings (text/settings.py): the largest single document, and how far a compressed file may
expand, relative to its compressed size and in absolute terms. Passing a cap raises `SkipFile`,
so the file is skipped with its reason and the corpus goes on.
"""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass
from typing import IO, BinaryIO, NamedTuple

from llm_pipeline.text.settings import RawCorpusSettings


class SkipFile(Exception):
    """This whole file is unusable, for the reason in the message."""


_DEFAULTS = RawCorpusSettings()
# Below this many bytes a compressed file is never a bomb, whatever its ratio.
_RATIO_FLOOR_BYTES = 1 << 20
_PIECE = 1 << 16


@dataclass(frozen=True)
class ReadLimits:
    """Caps on untrusted input (see `RawCorpusSettings` for what each means)."""

    max_document_bytes: int = _DEFAULTS.max_document_bytes
    max_decompression_ratio: float = _DEFAULTS.max_decompression_ratio
    max_decompressed_mb: int = _DEFAULTS.max_decompressed_mb

    @classmethod
    def of(cls, settings: object) -> ReadLimits:
        """The caps of a `RawCorpusSettings` (or the Dagster config derived from it)."""
        return cls(
            max_document_bytes=settings.max_document_bytes,
            max_decompression_ratio=settings.max_decompression_ratio,
            max_decompressed_mb=settings.max_decompressed_mb,
        )

    def decompressed_cap(self, compressed_bytes: int) -> tuple[int | None, str]:
        """The most a compressed file of this size may expand to, and the setting that says so."""
        caps = []
        if self.max_decompression_ratio:
            ratio_cap = max(
                int(self.max_decompression_ratio * compressed_bytes), _RATIO_FLOOR_BYTES
            )
            caps.append(
                (
                    ratio_cap,
                    f"{self.max_decompression_ratio:g}× its compressed {compressed_bytes} bytes "
                    "(max_decompression_ratio)",
                )
            )
        if self.max_decompressed_mb:
            caps.append((self.max_decompressed_mb << 20, "max_decompressed_mb"))
        if not caps:
            return None, ""
        return min(caps)


class CappedStream(io.RawIOBase):
    """A decompressed stream that stops with `SkipFile` once it passes its cap."""

    def __init__(self, inner: IO[bytes], cap: int, why: str) -> None:
        self.inner, self.cap, self.why, self.produced = inner, cap, why, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.inner.read1(min(len(buffer), _PIECE))  # small: good records before a bad cut
        self.produced += len(data)
        if self.produced > self.cap:
            raise SkipFile(
                f"decompressed size passes {self.cap} bytes, {self.why}: stopped there as a "
                "likely decompression bomb (raise the cap if the file is genuine)"
            )
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


BLOCK = 1 << 20


class OpenFile(NamedTuple):
    """One open corpus file: its descriptor's file object, compression and caps."""

    raw: BinaryIO
    compression: str | None
    limits: ReadLimits


def open_pass(source: OpenFile) -> IO[bytes]:
    """The file's bytes from the start, decompressed and capped, for one pass.

    Each pass reads a duplicate of the one checked descriptor (`os.dup`: the same open file,
    never the name again), so closing it leaves the descriptor for the next pass.
    """
    raw = os.fdopen(os.dup(source.raw.fileno()), "rb")
    raw.seek(0)
    if source.compression is None:
        return raw
    if source.compression == "gz":
        inner: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb")
        inner.myfileobj = raw  # so that closing the GzipFile closes the duplicate too
    else:
        import zstandard

        inner = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    cap, why = source.limits.decompressed_cap(os.fstat(raw.fileno()).st_size)
    if cap is None:
        return inner
    return io.BufferedReader(CappedStream(inner, cap, why), _PIECE)
