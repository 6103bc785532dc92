"""Pass 2's first stream: the staged documents that survive dedup, repeats taken out.

The staging copy (pass 1's kept documents, in output order) is read once: exact and near
duplicates are counted, sampled and skipped; the rest lose the passages an earlier document
already has (`passages.py`), counted and sampled under `passage_duplicate`; a document left
with less than one passage's worth of words is dropped. The survivors are written to an
uncompressed copy that the split (`split.py`) and the final write read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llm_pipeline.progress import Progress
from llm_pipeline.text.cleaning_config import CleaningConfig
from llm_pipeline.text.dedup import EXACT, KEEP, NEAR
from llm_pipeline.text.filter_pass import content_digest, sample_priority
from llm_pipeline.text.funnel import (
    EXACT_DUPLICATE,
    NEAR_DUPLICATE,
    PASSAGE_DUPLICATE,
    DroppedSample,
    Tally,
)
from llm_pipeline.text.passages import Repeats, remove_passages
from llm_pipeline.text.store import SURVIVOR_SCHEMA, PartWriter, parquet_parts


def write_survivors(
    staged_documents: Path,
    survivors: Path,
    decision: np.ndarray,
    repeats: Repeats | None,
    config: CleaningConfig,
    tally: Tally,
    sample: DroppedSample,
    progress: Progress,
) -> int:
    """Stream the staging copy (`staged_documents`) into `survivors`: duplicates counted,
    sampled and skipped; repeated passages taken out of the rest (counted and sampled), and a
    document left with less than one passage's worth of words (`passage_min_words`, or
    `min_words` if more: the stubs around what was taken out, "On Monday Bob wrote:") dropped.
    Returns the survivors' bytes."""
    labels = {EXACT: EXACT_DUPLICATE, NEAR: NEAR_DUPLICATE}
    kept_bytes = 0
    survivors.mkdir()
    with PartWriter(survivors, SURVIVOR_SCHEMA, compression="none") as writer:
        offset = 0
        for batch in read_batches(staged_documents):
            verdict = decision[offset : offset + batch.num_rows]
            rows = np.arange(offset, offset + batch.num_rows, dtype=np.uint32)
            offset += batch.num_rows
            n_bytes = batch.column("n_bytes").to_numpy()
            progress.advance(batch.num_rows, int(n_bytes.sum()))
            for code, name in labels.items():
                hit = verdict == code
                if hit.any():
                    tally.drop(name, name, int(n_bytes[hit].sum()), count=int(hit.sum()))
                    sample_duplicates(sample, batch, np.flatnonzero(hit), name)
            keep = verdict == KEEP
            columns = {
                name: batch.column(name).filter(pa.array(keep)) for name in batch.schema.names
            }
            edited = np.zeros(int(keep.sum()), dtype=bool)
            if repeats is not None:
                columns, keep_rows, edited = take_out_passages(
                    columns, rows[keep], repeats, config, tally, sample
                )
                columns["row"] = pa.array(keep_rows, pa.uint32())
            else:
                columns["row"] = pa.array(rows[keep], pa.uint32())
            columns["edited"] = pa.array(edited, pa.bool_())
            kept_bytes += int(pc.sum(columns["n_bytes"]).as_py() or 0)
            writer.write([columns[field.name] for field in SURVIVOR_SCHEMA])
    return kept_bytes


def take_out_passages(
    columns: dict,
    rows: np.ndarray,
    repeats: Repeats,
    config: CleaningConfig,
    tally: Tally,
    sample: DroppedSample,
) -> tuple[dict, np.ndarray, np.ndarray]:
    """The batch's columns with each document's repeated passages taken out (its `doc_id`,
    `n_chars` and `n_bytes` follow the new text); documents left too short are dropped."""
    texts = columns["text"].to_pylist()
    ids = columns["doc_id"].to_pylist()
    n_chars = columns["n_chars"].to_pylist()
    n_bytes = columns["n_bytes"].to_pylist()
    sources = columns["source"].to_pylist()
    keep = np.ones(len(texts), dtype=bool)
    edited = np.zeros(len(texts), dtype=bool)
    for i, row in enumerate(rows.tolist()):
        repeated = repeats.of(row)
        if not repeated:
            continue
        result = remove_passages(texts[i], repeated, config.passage_min_words)
        if not result.passages:
            continue
        tally.passages_removed += len(result.passages)
        for passage in result.passages:
            priority = sample_priority(passage.encode("utf-8"))
            sample.offer(priority, PASSAGE_DUPLICATE, "in an earlier document", sources[i],
                         passage)  # fmt: skip
        data = result.text.encode("utf-8")
        if result.words_left < max(config.min_words, config.passage_min_words):
            keep[i] = False
            tally.drop(PASSAGE_DUPLICATE, "too little left", len(data))
            tally.edited_bytes[PASSAGE_DUPLICATE] += n_bytes[i] - len(data)
            sample.offer(sample_priority(texts[i].encode("utf-8")), PASSAGE_DUPLICATE,
                         "too little left", sources[i], texts[i])  # fmt: skip
            continue
        tally.edited_bytes[PASSAGE_DUPLICATE] += n_bytes[i] - len(data)
        texts[i], ids[i], n_chars[i], n_bytes[i] = (
            result.text,
            content_digest(data).hex(),
            len(result.text),
            len(data),
        )
        edited[i] = True
    mask = pa.array(keep)
    out = {
        "doc_id": pa.array(ids, pa.string()).filter(mask),
        "text": pa.array(texts, pa.large_string()).filter(mask),
        "n_chars": pa.array(n_chars, pa.int64()).filter(mask),
        "source": columns["source"].filter(mask),
        "split_key": columns["split_key"].filter(mask),
        "n_bytes": pa.array(n_bytes, pa.int64()).filter(mask),
    }
    return out, rows[keep], edited[keep]


def read_batches(folder: Path, columns: list[str] | None = None) -> Iterator:
    for part in parquet_parts(folder):
        parquet = pq.ParquetFile(part, pre_buffer=False)
        yield from parquet.iter_batches(batch_size=8192, columns=columns)


def sample_duplicates(sample: DroppedSample, batch: pa.RecordBatch, rows, name: str) -> None:
    if sample.size <= 0:
        return
    ids = batch.column("doc_id")
    texts = batch.column("text")
    sources = batch.column("source")
    for row in rows.tolist():
        priority = int(ids[row].as_py()[:16], 16)
        sample.offer(priority, name, name, sources[row].as_py(), texts[row].as_py())
