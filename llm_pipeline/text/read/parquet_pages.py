"""The page sizes of a Parquet column chunk, read from the page headers, nothing decompressed.

pyarrow decodes a page whole, and a page holds whole values: a file of a few KB holding one
100 MB value (it compresses to nothing) costs about four times the value in pyarrow's buffers
(the decompressed page, the decoded dictionary, the batch) before `max_document_bytes` can be
applied to its offsets. The footer says how large a row group's column is in total, not which
page is large, so this module walks the column chunk's page headers (Thrift compact protocol,
a few bytes each, read through the same file handle) and returns each page's uncompressed size.
A row group whose text column has a page larger than `max_document_bytes` is then skipped
unread by the reader (read/parquet.py). No Dagster here.
"""

from __future__ import annotations

from typing import BinaryIO

# A page header is a few dozen bytes plus its statistics, which writers cap (parquet-cpp: 4 KB).
_HEADER_READ = 64 << 10
_MAX_HEADER = 1 << 20
_UNCOMPRESSED_SIZE, _COMPRESSED_SIZE = 2, 3  # PageHeader's field ids


class MalformedPageHeader(ValueError):
    """A page header that is not valid Thrift compact protocol (or runs past its limit)."""


class _Compact:
    """Just enough of Thrift's compact protocol to read PageHeader's sizes and skip the rest."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise MalformedPageHeader("page header runs past the bytes read")
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        shift = value = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise MalformedPageHeader("varint too long")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def skip(self, kind: int, depth: int = 0) -> None:
        if depth > 32:
            raise MalformedPageHeader("nested too deep")
        if kind in (1, 2):  # booleans carry their value in the type
            return
        if kind == 3:
            self.byte()
        elif kind in (4, 5, 6):
            self.varint()
        elif kind == 7:
            self.pos += 8
        elif kind == 8:
            size = self.varint()  # read before `pos` is: the length's own bytes come first
            self.pos += size
        elif kind in (9, 10):
            head = self.byte()
            size = head >> 4 if head >> 4 != 15 else self.varint()
            for _ in range(size):
                self.skip(head & 0x0F if head & 0x0F not in (1, 2) else 3, depth + 1)
        elif kind == 11:
            size = self.varint()
            types = self.byte() if size else 0
            for _ in range(size):
                self.skip(types >> 4, depth + 1)
                self.skip(types & 0x0F, depth + 1)
        elif kind == 12:
            self.struct(depth + 1)
        else:
            raise MalformedPageHeader(f"unknown Thrift type {kind}")

    def struct(self, depth: int = 0, wanted: tuple[int, ...] = ()) -> dict[int, int]:
        """Skip a struct, returning the integer fields whose ids are `wanted`."""
        found: dict[int, int] = {}
        field = 0
        while (head := self.byte()) != 0:
            delta, kind = head >> 4, head & 0x0F
            field = field + delta if delta else self.zigzag()
            if field in wanted and kind in (5, 6):
                found[field] = self.zigzag()
            else:
                self.skip(kind, depth)
        return found


def page_sizes(fh: BinaryIO, start: int, length: int) -> list[int]:
    """The uncompressed size of each page of the column chunk at `start` (`length` bytes)."""
    sizes, pos, end = [], start, start + length
    while pos < end:
        for limit in (_HEADER_READ, _MAX_HEADER):
            fh.seek(pos)
            reader = _Compact(fh.read(limit))
            try:
                fields = reader.struct(wanted=(_UNCOMPRESSED_SIZE, _COMPRESSED_SIZE))
                break
            except MalformedPageHeader:
                if limit == _MAX_HEADER or len(reader.data) < limit:
                    raise
        if _COMPRESSED_SIZE not in fields or _UNCOMPRESSED_SIZE not in fields:
            raise MalformedPageHeader("page header without its sizes")
        if fields[_COMPRESSED_SIZE] < 0 or fields[_UNCOMPRESSED_SIZE] < 0:
            raise MalformedPageHeader("negative page size")
        sizes.append(fields[_UNCOMPRESSED_SIZE])
        pos += reader.pos + fields[_COMPRESSED_SIZE]
    return sizes


def largest_page(fh: BinaryIO, column_chunk) -> int:
    """The largest uncompressed page of a row group's column chunk (pyarrow's metadata)."""
    offsets = [column_chunk.data_page_offset]
    if column_chunk.has_dictionary_page and column_chunk.dictionary_page_offset:
        offsets.append(column_chunk.dictionary_page_offset)
    return max(page_sizes(fh, min(offsets), column_chunk.total_compressed_size), default=0)
