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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple

from llm_pipeline.safe_open import UnsafeFileError
from llm_pipeline.text.read.caps import BLOCK, OpenFile, ReadLimits, SkipFile, open_pass
from llm_pipeline.text.read.chunks import iter_chunks, split_long_text
from llm_pipeline.text.read.corpus_files import (
    SUPPORTED_DESCRIPTION,
    corpus_files,
    file_kind,
    open_corpus_file,
    refusal,
)
from llm_pipeline.text.read.decoding import (
    DecodedText,
    UndecodableText,
    replacement_count,
    scan_text,
)
from llm_pipeline.text.read.parquet import read_parquet

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
    replaced_bytes: int = 0  # invalid UTF-8 bytes kept as U+FFFD, over all files
    files_with_replacements: int = 0
    lines_with_replacements: int = 0  # JSONL lines
    decoded_as: dict[str, int] = field(default_factory=dict)  # detected encoding: files
    # Where the reader is in the current file on disk, for progress: set for JSONL (one
    # streaming pass, compressed or not); None for text (read twice) and Parquet (footer first).
    file_position: int | None = None

    def summary(self) -> dict:
        """The counts and problems, as the raw manifest keeps them."""
        return {k: v for k, v in vars(self).items() if k != "file_position"}

    def skip_file(self, source: str, reason: str) -> None:
        self.files_skipped += 1
        self._report(f"{source}: skipped file: {reason}")

    def skip_line(self, source: str, line_no: int, reason: str) -> None:
        self.lines_skipped += 1
        self._report(f"{source}:{line_no}: skipped line: {reason}")

    def record_decoding(self, source: str, decoded: DecodedText) -> None:
        """Count what decoding a file changed (replaced bytes, a detected encoding)."""
        note = decoded.note(source)
        if note is None:
            return
        if decoded.detected:
            self.decoded_as[decoded.encoding] = self.decoded_as.get(decoded.encoding, 0) + 1
        else:
            self.replaced_bytes += decoded.replaced_bytes
            self.files_with_replacements += 1
        self._report(note)

    def replaced_line(self, source: str, line_no: int, replaced: int) -> None:
        """A record (JSONL line, Parquet row) kept with `replaced` invalid bytes as U+FFFD."""
        self.replaced_bytes += replaced
        self.lines_with_replacements += 1
        self._report(f"{source}:{line_no}: {replaced} invalid UTF-8 byte(s) replaced by U+FFFD")

    def _report(self, message: str) -> None:
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(message)


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


def _read_text(
    src: OpenFile,
    source: str,
    max_doc_chars: int,
    stats: ReadStats | None = None,
    encoding_errors: str = "replace",
) -> Iterator[str]:
    """A `.txt`/`.md` file as one document, cut into chunks when longer than `max_doc_chars`.

    The file is checked (binary, empty, decodable; see `text.read.decoding`) in one streaming pass
    before anything is yielded, so a file that is bad half-way through contributes nothing, and
    memory stays bounded by the chunk size, not the file size.
    """
    with open_pass(src) as fh:
        head = fh.read(_SNIFF_BYTES)
    encoding = sniff_encoding(head)
    if encoding == "utf-8-sig" and _looks_binary(head):
        raise SkipFile("binary file (contains NUL bytes)")
    try:
        decoded = scan_text(lambda: open_pass(src), encoding, encoding_errors)
    except UndecodableText as exc:
        raise SkipFile(str(exc)) from None
    if max_doc_chars == 0:  # one document: the document cap applies to the whole file
        size = 0
        for block in decoded.blocks():
            size += len(block.encode("utf-8", "surrogatepass"))
            if size > src.limits.max_document_bytes:
                raise SkipFile(
                    f"document larger than {src.limits.max_document_bytes} bytes "
                    "(max_document_bytes; or set max_doc_chars to cut it into chunks)"
                )
    if stats is not None:
        stats.record_decoding(source, decoded)
    yield from iter_chunks(decoded.blocks(), max_doc_chars)


# A JSONL line longer than this is skipped, not loaded: a file with no newline at all (a dump
# gone wrong) must not be read into memory as one line.
MAX_LINE_BYTES = ReadLimits().max_document_bytes


def _lines(fh, limit: int) -> Iterator[tuple[int, bytes | str | None]]:
    """(line number, line) pairs; None for a line longer than `limit`, which is skipped while
    reading, holding at most `limit` bytes of it."""
    newline = "\n" if isinstance(fh, io.TextIOBase) else b"\n"
    line_no = 0
    while line := fh.readline(limit + 1):
        line_no += 1
        if len(line) > limit and not line.endswith(newline):
            while (rest := fh.readline(BLOCK)) and not rest.endswith(newline):
                pass
            yield line_no, None
        else:
            yield line_no, line


def _read_jsonl(
    src: OpenFile, source: str, text_field: str, stats: ReadStats, encoding_errors: str = "replace"
) -> Iterator[str]:
    any_line = False
    limit = src.limits.max_document_bytes
    with open_pass(src) as raw:
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
                raise SkipFile("binary file (contains NUL bytes)")
            if not line.strip():
                continue
            any_line = True
            try:
                record = json.loads(line)
            except UnicodeDecodeError as exc:
                if encoding_errors != "replace":
                    stats.skip_line(source, line_no, f"not valid UTF-8 ({exc.reason})")
                    continue
                record = _replaced_line(line, source, line_no, stats)
                if record is None:
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
        raise SkipFile("empty file")


def _replaced_line(line: bytes, source: str, line_no: int, stats: ReadStats):
    """A JSONL line with invalid UTF-8 bytes, decoded with U+FFFD (counted); None if malformed."""
    text = line.decode("utf-8", errors="replace")
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as exc:
        stats.skip_line(source, line_no, f"malformed JSON ({type(exc).__name__})")
        return None
    replaced = replacement_count(text) - replacement_count(line.decode("utf-8", "ignore"))
    stats.replaced_line(source, line_no, replaced)
    return record


def iter_documents(
    root: Path,
    *,
    text_field: str = "text",
    max_doc_chars: int = 0,
    stats: ReadStats | None = None,
    files: list[Path] | None = None,
    limits: ReadLimits | None = None,
    encoding_errors: str = "replace",
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
            yield from _read_one(
                raw, path, source, text_field, max_doc_chars, stats, limits, encoding_errors
            )


def _read_one(
    raw: BinaryIO,
    path: Path,
    source: str,
    text_field: str,
    max_doc_chars: int,
    stats: ReadStats,
    limits: ReadLimits,
    encoding_errors: str = "replace",
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
    src = OpenFile(raw, compression, limits)
    stats.file_position = None
    if file_type == "text":
        texts = _read_text(src, source, max_doc_chars, stats, encoding_errors)
    elif file_type == "jsonl":
        texts = _read_jsonl(src, source, text_field, stats, encoding_errors)
    else:
        texts = read_parquet(src, source, text_field, stats, encoding_errors)
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
                if file_type == "jsonl":
                    stats.file_position = raw.tell()
                yield Document(source, piece)
    except SkipFile as exc:
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
