"""Pass 2's first stream: the staged documents that survive dedup, repeats taken out.

The staging copy (pass 1's kept documents, in output order) is read once: exact and near
duplicates are counted, sampled and skipped; the rest lose the passages an earlier document
already has (`passages.py`), counted and sampled under `passage_duplicate`. A document that
lost passages is judged again: it is dropped when less than one passage's worth of words is
left (the stubs around what was taken out, "On Monday Bob wrote:"), when it no longer passes
the basic rules (too short now for `min_chars`, say: the cleaned table's check holds every row
to them), or when it became the same text as an earlier survivor (two documents that differed
only in their repeats: `doc_id`s stay unique). The Gopher and C4 rules judged the whole
document in pass 1 and are not run again: in the parent process, on every edited document,
they would add a quarter to the cleaning's time.

The survivors are written to an uncompressed copy that the split (`split/sides.py`) and the final
write read, without the rows that turned out to repeat an earlier one (`kept_batches`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llm_pipeline.progress import Progress
from llm_pipeline.text.dedup.exact import EXACT, KEEP, NEAR, KeySpill, mark_exact_duplicates
from llm_pipeline.text.dedup.passages import Repeats, remove_passages
from llm_pipeline.text.filters.basic import DocumentFilter
from llm_pipeline.text.filters.cleaning_config import CleaningConfig
from llm_pipeline.text.filters.filter_pass import content_digest, sample_priority
from llm_pipeline.text.funnel import (
    EXACT_DUPLICATE,
    NEAR_DUPLICATE,
    PASSAGE_DUPLICATE,
    DroppedSample,
    Tally,
)
from llm_pipeline.text.store import SURVIVOR_SCHEMA, PartWriter, parquet_parts

# Why a document that lost passages is dropped (its funnel reasons under passage_duplicate).
TOO_LITTLE_LEFT = "too little left"
SAME_AS_EARLIER = "the same as an earlier document without its repeats"


@dataclass
class Written:
    """What `write_survivors` wrote: rows, bytes, and (with passage dedup) the rows' content
    keys, spilled to find rows that became identical."""

    rows: int = 0
    n_bytes: int = 0
    digests: KeySpill | None = None


def write_survivors(
    staged_documents: Path,
    survivors: Path,
    decision: np.ndarray,
    repeats: Repeats | None,
    config: CleaningConfig,
    tally: Tally,
    sample: DroppedSample,
    progress: Progress,
    digests: KeySpill | None = None,
) -> Written:
    """Stream the staging copy (`staged_documents`) into `survivors`: duplicates counted,
    sampled and skipped; repeated passages taken out of the rest (counted and sampled), and
    the documents that lost some judged again (see the module). With `digests`, each row's
    content key is spilled there for `repeated_survivors`."""
    labels = {EXACT: EXACT_DUPLICATE, NEAR: NEAR_DUPLICATE}
    written = Written(digests=digests)
    rules = config.basic_filters()
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
                    columns, rows[keep], repeats, config, rules, tally, sample
                )
                columns["row"] = pa.array(keep_rows, pa.uint32())
            else:
                columns["row"] = pa.array(rows[keep], pa.uint32())
            columns["edited"] = pa.array(edited, pa.bool_())
            count = len(columns["row"])
            if digests is not None and count:
                keys = [_content_key(doc_id) for doc_id in columns["doc_id"].to_pylist()]
                index = np.arange(written.rows, written.rows + count, dtype=np.uint32)
                digests.add(np.asarray(keys, dtype=np.uint64), index)
            written.rows += count
            written.n_bytes += int(pc.sum(columns["n_bytes"]).as_py() or 0)
            writer.write([columns[field.name] for field in SURVIVOR_SCHEMA])
    return written


def take_out_passages(
    columns: dict,
    rows: np.ndarray,
    repeats: Repeats,
    config: CleaningConfig,
    rules: list[DocumentFilter],
    tally: Tally,
    sample: DroppedSample,
) -> tuple[dict, np.ndarray, np.ndarray]:
    """The batch's columns with each document's repeated passages taken out (its `doc_id`,
    `n_chars` and `n_bytes` follow the new text); a document left too short, or failing one
    of `rules` (the cleaning's basic rules) as it now stands, is dropped."""
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
                         passage, once=True)  # fmt: skip
        data = result.text.encode("utf-8")
        reason = TOO_LITTLE_LEFT if result.words_left < config.passage_min_words else None
        for rule in rules if reason is None else ():
            kept, why = rule.filter(result.text)
            if not kept:
                reason = f"then fails {why or rule.name}"
                break
        tally.edited_bytes[PASSAGE_DUPLICATE] += n_bytes[i] - len(data)
        if reason is not None:
            keep[i] = False
            tally.drop(PASSAGE_DUPLICATE, reason, len(data))
            sample.offer(sample_priority(texts[i].encode("utf-8")), PASSAGE_DUPLICATE, reason,
                         sources[i], texts[i])  # fmt: skip
            continue
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


def repeated_survivors(
    survivors: Path, written: Written, tally: Tally, sample: DroppedSample
) -> np.ndarray | None:
    """One bool per survivor row: the same text as an earlier row, which only passage dedup
    can make (counted and sampled under `passage_duplicate`, and taken out of
    `written.n_bytes`); None when there is none."""
    if written.digests is None:
        return None
    repeated = np.zeros(written.rows, dtype=np.uint8)
    if not mark_exact_duplicates(written.digests, repeated):
        return None
    offset = 0
    for batch in read_batches(survivors, ["doc_id", "text", "source", "n_bytes"]):
        hit = np.flatnonzero(repeated[offset : offset + batch.num_rows])
        offset += batch.num_rows
        if len(hit):
            n_bytes = int(batch.column("n_bytes").to_numpy()[hit].sum())
            written.n_bytes -= n_bytes
            tally.drop(PASSAGE_DUPLICATE, SAME_AS_EARLIER, n_bytes, count=len(hit))
            sample_duplicates(sample, batch, hit, PASSAGE_DUPLICATE, SAME_AS_EARLIER)
    return repeated.astype(bool)


def kept_batches(
    survivors: Path, repeated: np.ndarray | None, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """The survivors' rows in order, without those `repeated_survivors` marked."""
    offset = 0
    for batch in read_batches(survivors, columns):
        if repeated is not None:
            mask = ~repeated[offset : offset + batch.num_rows]
            offset += batch.num_rows
            if not mask.all():
                batch = batch.filter(pa.array(mask))
        yield batch


def read_batches(folder: Path, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of a scratch copy's parts, in order."""
    for part in parquet_parts(folder):
        parquet = pq.ParquetFile(part, pre_buffer=False)
        yield from parquet.iter_batches(batch_size=8192, columns=columns)


def sample_duplicates(
    sample: DroppedSample, batch: pa.RecordBatch, rows, name: str, reason: str | None = None
) -> None:
    """Offer the duplicates at `rows` of `batch` to the dropped sample (priority: content)."""
    if sample.size <= 0:
        return
    ids = batch.column("doc_id")
    texts = batch.column("text")
    sources = batch.column("source")
    for row in rows.tolist():
        priority = _content_key(ids[row].as_py())
        sample.offer(priority, name, reason or name, sources[row].as_py(), texts[row].as_py())


def _content_key(doc_id: str) -> int:
    """The 64-bit key of a `doc_id` (the content hash's first 8 bytes): the exact-dedup key
    pass 1 spills, and the dropped sample's priority."""
    return int(doc_id[:16], 16)
