"""Parquet storage of document tables, written in parts of bounded size.

Every stage that stores documents goes through here, so part naming, compression (zstd) and
the part-size bound are the same everywhere.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DOCUMENTS_SCHEMA = pa.schema([("source", pa.string()), ("text", pa.large_string())])
# The cleaned corpus (`cleaned_corpus`'s parts).
CLEANED_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("text", pa.large_string()),
        ("n_chars", pa.int64()),
        ("source", pa.string()),
        ("split_key", pa.uint64()),  # hash of the raw text: what the side depends on
        ("split", pa.string()),  # "train" or "val", decided once in cleaning (text/split/sides.py)
    ]
)
# Cleaning's scratch copies: pass 1's kept documents (no side yet, their UTF-8 bytes), and the
# survivors of dedup with their staged `row` (its MinHash signature) and whether passage dedup
# `edited` the text after that signature was computed.
STAGING_SCHEMA = pa.schema([*list(CLEANED_SCHEMA)[:-1], ("n_bytes", pa.int64())])
SURVIVOR_SCHEMA = pa.schema([*list(STAGING_SCHEMA), ("row", pa.uint32()), ("edited", pa.bool_())])
# Start a new part after this many bytes of text, so no single file grows without bound.
PART_TARGET_BYTES = 128 << 20


def parquet_parts(folder: Path) -> list[Path]:
    """The data files of a stage's output folder, in order."""
    return sorted(folder.glob("part-*.parquet"))


class PartWriter:
    """Append record batches to `part-NNNNN.parquet` files of bounded size, zstd-compressed
    (`compression="none"` for scratch copies that are read once and deleted)."""

    def __init__(self, out_dir: Path, schema: pa.Schema, compression: str = "zstd") -> None:
        self.out_dir = out_dir
        self.schema = schema
        self.compression = compression
        self.writer: pq.ParquetWriter | None = None
        self.part_bytes = 0
        self.parts = 0
        self.rows = 0

    def write(self, columns: list[pa.Array]) -> None:
        """Write one batch given as arrays in schema order; empty batches are ignored."""
        if len(columns[0]) == 0:
            return
        if self.writer is None or self.part_bytes >= PART_TARGET_BYTES:
            self.close()
            path = self.out_dir / f"part-{self.parts:05d}.parquet"
            self.writer = pq.ParquetWriter(path, self.schema, compression=self.compression)
            self.parts += 1
            self.part_bytes = 0
        table = pa.Table.from_arrays(columns, schema=self.schema)
        self.writer.write_table(table)
        self.part_bytes += table.nbytes
        self.rows += table.num_rows

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_documents(documents, out_dir: Path, batch_size: int = 4096) -> int:
    """Write an iterable of `Document(source, text)` as document parts; return the row count."""
    with PartWriter(out_dir, DOCUMENTS_SCHEMA) as writer:
        sources: list[str] = []
        texts: list[str] = []
        for document in documents:
            sources.append(document.source)
            texts.append(document.text)
            if len(texts) >= batch_size:
                writer.write([pa.array(sources, pa.string()), pa.array(texts, pa.large_string())])
                sources, texts = [], []
        writer.write([pa.array(sources, pa.string()), pa.array(texts, pa.large_string())])
        return writer.rows
