"""Parquet corpus files: the text column streamed in batches, each value measured first.

A value's byte length comes from the column's offsets buffer (`pyarrow.compute.binary_length`),
so a value over `max_document_bytes` is skipped before it becomes a Python string. pyarrow
decodes a page whole, though, at about four times its size (a 4 KB file holding one 100 MB value
cost 400 MB), so each row group's text pages are measured first from their headers
(`parquet_pages.py`): a row group with a page larger than `max_document_bytes` is skipped
unread, with its rows and the reason, and nothing larger than that cap is ever decompressed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from llm_pipeline.text.read.caps import BLOCK, OpenFile, ReadLimits, SkipFile, open_pass
from llm_pipeline.text.read.parquet_pages import MalformedPageHeader, largest_page


class ReadStats(Protocol):
    """What this module records (readers.ReadStats)."""

    def skip_line(self, source: str, line_no: int, reason: str) -> None: ...

    def replaced_line(self, source: str, line_no: int, replaced: int) -> None: ...


def read_parquet(
    src: OpenFile,
    source: str,
    text_field: str,
    stats: ReadStats,
    encoding_errors: str = "replace",
) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if src.compression:
        # Decompress to a temporary file (not into memory) so Parquet can seek in it; the
        # decompression caps bound how large that file may grow.
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / "data.parquet"
            with open_pass(src) as fh, open(plain, "wb") as out:
                shutil.copyfileobj(fh, out, BLOCK)
            with open(plain, "rb") as raw:  # our own private file
                yield from read_parquet(
                    src._replace(raw=raw, compression=None),
                    source,
                    text_field,
                    stats,
                    encoding_errors,
                )
        return
    with open_pass(src) as fh:
        try:
            parquet = pq.ParquetFile(fh, pre_buffer=False)
        except (pa.ArrowException, OSError) as exc:
            raise SkipFile(f"not a readable Parquet file ({exc})") from None
        with parquet:
            values = _parquet_values(parquet, fh, src.limits, source, text_field, stats)
            yield from _decoded(values, source, stats, encoding_errors)


def _parquet_values(
    parquet, fh, limits: ReadLimits, source: str, text_field: str, stats: ReadStats
) -> Iterator[tuple[int, str | bytes]]:
    """The text column's values, each measured from the column's offsets before it becomes a
    Python string, so a huge value is skipped without being decoded; a row group whose pages
    are too large to decode in bounded memory is skipped before any of it is read."""
    import pyarrow as pa

    field_index = parquet.schema_arrow.get_field_index(text_field)
    if field_index == -1:
        raise SkipFile(f"no {text_field!r} column (columns: {parquet.schema_arrow.names})")
    column_type = parquet.schema_arrow.field(field_index).type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise SkipFile(f"column {text_field!r} is {column_type}, not a string")
    cap = limits.max_document_bytes
    leaf = parquet.schema.names.index(text_field)  # a flat string column: one leaf, one value a row
    row = 0
    for group in range(parquet.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        try:
            largest = largest_page(fh, parquet.metadata.row_group(group).column(leaf))
        except MalformedPageHeader as exc:
            raise SkipFile(f"not a readable Parquet file (row group {group}: {exc})") from None
        if largest > cap:
            stats.skip_line(
                source,
                row + 1,
                f"rows {row + 1}-{row + rows} skipped unread: their {text_field!r} column has a "
                f"page of {largest} bytes, larger than {cap} (max_document_bytes)",
            )
            row += rows
            continue
        for batch in parquet.iter_batches(columns=[text_field], batch_size=4096,
                                          row_groups=[group]):  # fmt: skip
            yield from _batch_values(batch.column(0), cap, row, source, text_field, stats)
            row += batch.num_rows


def _batch_values(
    column, cap: int, row: int, source: str, text_field: str, stats: ReadStats
) -> Iterator[tuple[int, str | bytes]]:
    """(row, value) of one batch; a null or a value over `cap` is skipped with its reason."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lengths = pc.binary_length(column).to_pylist()  # from the offsets buffer
    values = None
    if all(n is None or n <= cap for n in lengths):
        try:
            values = column.to_pylist()
        except UnicodeDecodeError:  # a value is not valid UTF-8: decode row by row
            values = None
    binary = column.view(pa.large_binary() if pa.types.is_large_string(column.type)
                         else pa.binary())  # fmt: skip
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
        yield row, values[i] if values is not None else binary[i].as_py()


def _decoded(
    values: Iterator[tuple[int, str | bytes]], source: str, stats: ReadStats, policy: str
) -> Iterator[str]:
    """Values as text; one that is not valid UTF-8 is kept with U+FFFD (counted) under the
    `replace` policy; under `skip` (`raw_corpus.encoding_errors`) the file is skipped whole."""
    from llm_pipeline.text.read.decoding import replacement_count

    for row, value in values:
        if isinstance(value, str):
            yield value
            continue
        try:
            yield value.decode("utf-8")
        except UnicodeDecodeError as exc:
            if policy != "replace":  # the strict policy: the file is skipped whole
                raise SkipFile(f"not valid UTF-8 (row {row}: {exc.reason})") from None
            text = value.decode("utf-8", "replace")
            replaced = replacement_count(text) - replacement_count(value.decode("utf-8", "ignore"))
            stats.replaced_line(source, row, replaced)
            yield text
