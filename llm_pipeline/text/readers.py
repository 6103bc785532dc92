"""Read a corpus folder into documents, one file type at a time, never stopping on one bad file.

Supported: `.txt` / `.md` (a file is a document), `.jsonl` (one record per line, text in a
configurable field), `.parquet` (a text column); each may be compressed as `.gz` or `.zst`.
A bad file or line is skipped and recorded in `ReadStats` with its path, line and reason, so the
user can fix it; good documents in the same corpus are still read.

Which files form the corpus (and which are refused) is `corpus_files.py`; cutting long texts into
documents is `chunks.py`. Both are re-used here and importable from this module too.

Every file is opened once (`open_corpus_file`: no symlink followed, a regular file checked on
the descriptor) and read only through that descriptor, several passes included. Untrusted input
is capped (`ReadLimits`, from the `raw_corpus` settings): the largest document, and how far a
compressed file may expand, relative to its size and in absolute terms.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, NamedTuple

from llm_pipeline.safe_open import UnsafeFileError
from llm_pipeline.text.chunks import iter_chunks, split_long_text
from llm_pipeline.text.corpus_files import (
    SUPPORTED_DESCRIPTION,
    corpus_files,
    file_kind,
    open_corpus_file,
    refusal,
)
from llm_pipeline.text.settings import RawCorpusSettings

# How many skip messages are kept verbatim; the counts are always complete.
MAX_REPORTED_PROBLEMS = 50
_SNIFF_BYTES = 8192


class Document(NamedTuple):
    """One document: the text and the file it came from (relative to the corpus folder)."""

    source: str
    text: str


@dataclass
class ReadStats:
    """What reading a corpus found: counts plus the first problems, each naming file and reason."""

    files_read: int = 0
    files_skipped: int = 0
    lines_skipped: int = 0
    documents: int = 0
    chunked_documents: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    def skip_file(self, source: str, reason: str) -> None:
        self.files_skipped += 1
        self._report(f"{source}: skipped file: {reason}")

    def skip_line(self, source: str, line_no: int, reason: str) -> None:
        self.lines_skipped += 1
        self._report(f"{source}:{line_no}: skipped line: {reason}")

    def _report(self, message: str) -> None:
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(message)


class _SkipFile(Exception):
    """Internal: this whole file is unusable, for the reason in the message."""


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


class _CappedStream(io.RawIOBase):
    """A decompressed stream that stops with `_SkipFile` once it passes its cap."""

    def __init__(self, inner: IO[bytes], cap: int, why: str) -> None:
        self.inner, self.cap, self.why, self.produced = inner, cap, why, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.inner.read1(min(len(buffer), _PIECE))  # small: good records before a bad cut
        self.produced += len(data)
        if self.produced > self.cap:
            raise _SkipFile(
                f"decompressed size passes {self.cap} bytes, {self.why}: stopped there as a "
                "likely decompression bomb (raise the cap if the file is genuine)"
            )
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def fingerprint_files(root: Path, files: list[Path] | None = None) -> str:
    """A content hash of a corpus folder: changes exactly when a file's path or bytes change.

    Refused and unreadable entries count by name and reason (their bytes are never read), so
    fixing one (say, `chmod +r`) changes the fingerprint too.
    """
    digest = hashlib.sha256()
    for path in files if files is not None else corpus_files(root):
        file_digest = hashlib.sha256()
        reason = None
        try:
            with open_corpus_file(path, root) as fh:
                while block := fh.read(1 << 20):
                    file_digest.update(block)
        except UnsafeFileError as exc:
            reason = exc.reason
        except OSError as exc:
            reason = refusal(path, root) or f"cannot be read ({exc.strerror or exc})"
        if reason is not None:
            file_digest = hashlib.sha256(b"refused\0" + reason.encode())
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(file_digest.digest())
    return digest.hexdigest()


class _Source(NamedTuple):
    """One open corpus file: its descriptor's file object, compression and caps."""

    raw: BinaryIO
    compression: str | None
    limits: ReadLimits


def _open_binary(source: _Source) -> IO[bytes]:
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
    return io.BufferedReader(_CappedStream(inner, cap, why), _PIECE)


def _decompression_error(exc: Exception) -> bool:
    name = type(exc).__name__
    return isinstance(exc, (gzip.BadGzipFile, EOFError, OSError)) or "Zstd" in name


def _looks_binary(head: bytes) -> bool:
    return b"\0" in head


# Byte-order marks, longest first (a UTF-32-LE BOM starts with the UTF-16-LE one).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ENCODING_NAMES = {"utf-8-sig": "UTF-8", "utf-16": "UTF-16", "utf-32": "UTF-32"}


def sniff_encoding(head: bytes) -> str:
    """The file's encoding from its byte-order mark: UTF-16/32 when marked, else UTF-8.

    Windows tools write UTF-16 with a BOM ("Unicode" in Notepad); without this such a file
    is full of NUL bytes and would be taken for binary.
    """
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    return "utf-8-sig"


_BLOCK = 1 << 20


def _decoded_blocks(src: _Source, encoding: str = "utf-8-sig") -> Iterator[str]:
    """The file's text in blocks, decoded incrementally; raises _SkipFile on invalid input."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    with _open_binary(src) as fh:
        while True:
            block = fh.read(_BLOCK)
            final = not block
            try:
                text = decoder.decode(block, final=final)
            except UnicodeDecodeError as exc:
                carried = len(exc.object) - len(block)  # bytes the decoder held back before
                position = offset - carried + exc.start
                raise _SkipFile(
                    f"not valid {_ENCODING_NAMES[encoding]} "
                    f"(byte {position}: {exc.object[exc.start : exc.start + 4]!r})"
                ) from None
            if text:
                yield text
            if final:
                return
            offset += len(block)


def _read_text(src: _Source, source: str, max_doc_chars: int) -> Iterator[str]:
    """A `.txt`/`.md` file as one document, cut into chunks when longer than `max_doc_chars`.

    The file is checked (binary, empty, valid UTF-8) in one streaming pass before anything is
    yielded, so a file that is bad half-way through contributes nothing, and memory stays
    bounded by the chunk size, not the file size.
    """
    with _open_binary(src) as fh:
        head = fh.read(_SNIFF_BYTES)
    encoding = sniff_encoding(head)
    if encoding == "utf-8-sig" and _looks_binary(head):
        raise _SkipFile("binary file (contains NUL bytes)")
    has_text = False
    size = 0
    whole = max_doc_chars == 0  # one document: the document cap applies to the file
    for block in _decoded_blocks(src, encoding):
        size += len(block.encode("utf-8", "surrogatepass")) if whole else 0
        if whole and size > src.limits.max_document_bytes:
            raise _SkipFile(
                f"document larger than {src.limits.max_document_bytes} bytes "
                "(max_document_bytes; or set max_doc_chars to cut it into chunks)"
            )
        if "\0" in block:  # NULs after the first 8 KiB, or in UTF-16 text: binary all the same
            raise _SkipFile("binary file (contains NUL characters)")
        has_text = has_text or bool(block.strip())
    if not has_text:
        raise _SkipFile("empty file")
    yield from iter_chunks(_decoded_blocks(src, encoding), max_doc_chars)


# A JSONL line longer than this is skipped, not loaded: a file with no newline at all (a dump
# gone wrong) must not be read into memory as one line.
MAX_LINE_BYTES = _DEFAULTS.max_document_bytes


def _lines(fh, limit: int) -> Iterator[tuple[int, bytes | str | None]]:
    """(line number, line) pairs; None for a line longer than `limit`, which is skipped while
    reading, holding at most `limit` bytes of it."""
    newline = "\n" if isinstance(fh, io.TextIOBase) else b"\n"
    line_no = 0
    while line := fh.readline(limit + 1):
        line_no += 1
        if len(line) > limit and not line.endswith(newline):
            while (rest := fh.readline(_BLOCK)) and not rest.endswith(newline):
                pass
            yield line_no, None
        else:
            yield line_no, line


def _read_jsonl(src: _Source, source: str, text_field: str, stats: ReadStats) -> Iterator[str]:
    any_line = False
    limit = src.limits.max_document_bytes
    with _open_binary(src) as raw:
        fh = io.BufferedReader(raw) if src.compression == "zst" else raw
        encoding = sniff_encoding(fh.peek(4)[:4] if hasattr(fh, "peek") else b"")
        if encoding != "utf-8-sig":  # UTF-16/32 with a BOM: decode before splitting lines
            fh = io.TextIOWrapper(fh, encoding=encoding, newline="")
        for line_no, line in _lines(fh, limit):
            if line is None:
                any_line = True
                stats.skip_line(source, line_no, f"line longer than {limit} bytes")
                continue
            if line_no == 1 and encoding == "utf-8-sig" and _looks_binary(line[:_SNIFF_BYTES]):
                raise _SkipFile("binary file (contains NUL bytes)")
            if not line.strip():
                continue
            any_line = True
            try:
                record = json.loads(line)
            except UnicodeDecodeError as exc:
                stats.skip_line(source, line_no, f"not valid UTF-8 ({exc.reason})")
                continue
            except json.JSONDecodeError as exc:
                stats.skip_line(source, line_no, f"malformed JSON ({exc.msg})")
                continue
            except (ValueError, RecursionError) as exc:  # huge ints, absurd nesting
                stats.skip_line(source, line_no, f"malformed JSON ({type(exc).__name__})")
                continue
            if not isinstance(record, dict):
                stats.skip_line(source, line_no, "record is not a JSON object")
                continue
            if text_field not in record:
                stats.skip_line(source, line_no, f"record has no {text_field!r} field")
                continue
            value = record[text_field]
            if not isinstance(value, str):
                stats.skip_line(
                    source, line_no, f"field {text_field!r} is {type(value).__name__}, not a string"
                )
                continue
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                stats.skip_line(source, line_no, "text contains an unpaired surrogate (\\udXXX)")
                continue
            yield value
    if not any_line:
        raise _SkipFile("empty file")


def _read_parquet(src: _Source, source: str, text_field: str, stats: ReadStats) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if src.compression:
        # Decompress to a temporary file (not into memory) so Parquet can seek in it; the
        # decompression caps bound how large that file may grow.
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / "data.parquet"
            with _open_binary(src) as fh, open(plain, "wb") as out:
                shutil.copyfileobj(fh, out, _BLOCK)
            with open(plain, "rb") as raw:  # our own private file
                yield from _read_parquet(
                    src._replace(raw=raw, compression=None), source, text_field, stats
                )
        return
    try:
        parquet = pq.ParquetFile(_open_binary(src), pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        raise _SkipFile(f"not a readable Parquet file ({exc})") from None
    with parquet:
        yield from _parquet_values(parquet, src.limits, source, text_field, stats)


def _parquet_values(parquet, limits: ReadLimits, source: str, text_field: str, stats: ReadStats):
    """The text column's values, each measured from the column's offsets before it becomes a
    Python string, so a huge value is skipped without being decoded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    field_index = parquet.schema_arrow.get_field_index(text_field)
    if field_index == -1:
        raise _SkipFile(f"no {text_field!r} column (columns: {parquet.schema_arrow.names})")
    column_type = parquet.schema_arrow.field(field_index).type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise _SkipFile(f"column {text_field!r} is {column_type}, not a string")
    cap = limits.max_document_bytes
    row = 0
    for batch in parquet.iter_batches(columns=[text_field], batch_size=256):
        column = batch.column(0)
        lengths = pc.binary_length(column).to_pylist()  # from the offsets buffer
        small = all(n is None or n <= cap for n in lengths)
        values = column.to_pylist() if small else None
        for i, length in enumerate(lengths):
            row += 1
            if length is None:
                stats.skip_line(source, row, f"row has a null {text_field!r}")
                continue
            if length > cap:
                stats.skip_line(
                    source, row, f"value of {length} bytes, larger than {cap} (max_document_bytes)"
                )
                continue
            yield values[i] if values is not None else column[i].as_py()
        del column, values


def iter_documents(
    root: Path,
    *,
    text_field: str = "text",
    max_doc_chars: int = 0,
    stats: ReadStats | None = None,
    files: list[Path] | None = None,
    limits: ReadLimits | None = None,
) -> Iterator[Document]:
    """Stream the documents of every supported file under `root`, skipping bad input.

    A file is read completely before any of its documents is yielded only for `.txt`/`.md` (one
    document each); JSONL and Parquet stream line by line / batch by batch. A file that turns out
    to be unreadable part-way (bad compression, undecodable text) is recorded as skipped.
    `limits` default to the `raw_corpus` settings' defaults.
    """
    stats = stats if stats is not None else ReadStats()
    limits = limits or ReadLimits(max_document_bytes=MAX_LINE_BYTES)
    for path in files if files is not None else corpus_files(root):
        source = path.relative_to(root).as_posix()
        try:
            raw = open_corpus_file(path, root)
        except UnsafeFileError as exc:
            stats.skip_file(source, exc.reason)
            continue
        except OSError as exc:
            stats.skip_file(
                source, refusal(path, root) or f"cannot be read ({exc.strerror or exc})"
            )
            continue
        with raw:
            yield from _read_one(raw, path, source, text_field, max_doc_chars, stats, limits)


def _read_one(
    raw: BinaryIO,
    path: Path,
    source: str,
    text_field: str,
    max_doc_chars: int,
    stats: ReadStats,
    limits: ReadLimits,
) -> Iterator[Document]:
    """The documents of one opened file; its problems go to `stats`."""
    kind = file_kind(path)
    if kind is None:
        stats.skip_file(source, f"unknown file type (supported: {SUPPORTED_DESCRIPTION})")
        return
    if os.fstat(raw.fileno()).st_size == 0:
        stats.skip_file(source, "empty file")
        return
    file_type, compression = kind
    src = _Source(raw, compression, limits)
    if file_type == "text":
        texts = _read_text(src, source, max_doc_chars)
    elif file_type == "jsonl":
        texts = _read_jsonl(src, source, text_field, stats)
    else:
        texts = _read_parquet(src, source, text_field, stats)
    produced = 0
    try:
        for text in texts:
            # Text files arrive already cut (streamed); records are cut here.
            pieces = [text] if file_type == "text" else split_long_text(text, max_doc_chars)
            if len(pieces) > 1:
                stats.chunked_documents += 1
            for piece in pieces:
                produced += 1
                stats.documents += 1
                stats.bytes += len(piece.encode("utf-8"))
                yield Document(source, piece)
    except _SkipFile as exc:
        stats.skip_file(source, str(exc))
        return
    except (PermissionError, FileNotFoundError, IsADirectoryError) as exc:
        what = "partly read: " if produced else ""
        stats.skip_file(source, f"{what}cannot be read ({exc.strerror or exc})")
        return
    except Exception as exc:  # any other failure is this file's, not the corpus's
        what = "partly read" if produced else "unreadable"
        detail = f"corrupt {compression} data" if _decompression_error(exc) else "error"
        stats.skip_file(source, f"{what}: {detail} ({type(exc).__name__}: {exc})")
        return
    if file_type == "text" and produced > 1:
        stats.chunked_documents += 1
    stats.files_read += 1
