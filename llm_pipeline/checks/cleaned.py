"""The great-expectations suite guarding `cleaned_corpus` (blocking: bad data never trains).

great-expectations 1.x is called directly (dagster-ge does not support 1.x) and imported inside
the check, because importing it costs about two seconds that definitions loading should not pay.
The suite runs per Parquet part (bounded memory). `doc_id` uniqueness is checked without holding
every id: 64-bit keys of the ids are spilled to disk by hash range (`text.dedup.exact.KeySpill`) and
the uniqueness expectation runs on one range at a time. `_dropped/` samples are not part of the
table (`parquet_parts` lists only the top-level `part-*.parquet`).
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue, asset_check

from llm_pipeline.assets.cleaned import cleaned_corpus
from llm_pipeline.partitions import corpus_key
from llm_pipeline.resources import StorageResource
from llm_pipeline.text.dedup.exact import KeySpill
from llm_pipeline.text.filters.normalize import CONTROL_CHARS_REGEX
from llm_pipeline.text.funnel import CLEANING_FILE
from llm_pipeline.text.store import parquet_parts

REQUIRED_COLUMNS = ["doc_id", "text", "n_chars", "source"]
ID_PARTITIONS = 64
# Rows per validated frame: great-expectations and pandas hold a few copies of a frame's text
# (the regex and length expectations), so this bounds the check's memory: at most 4096 ×
# max_doc_chars characters per frame, about 10 MB of text on typical documents.
GX_BATCH_ROWS = 4096


def _row_suite(gx, min_chars: int, max_chars: int):
    expectations = gx.expectations
    suite = gx.ExpectationSuite(name="cleaned_corpus_rows")
    suite.add_expectation(
        expectations.ExpectTableColumnsToMatchSet(column_set=REQUIRED_COLUMNS, exact_match=False)
    )
    suite.add_expectation(expectations.ExpectColumnValuesToNotBeNull(column="text"))
    suite.add_expectation(
        expectations.ExpectColumnValueLengthsToBeBetween(
            column="text", min_value=max(min_chars, 1), max_value=max_chars or None
        )
    )
    suite.add_expectation(
        expectations.ExpectColumnValuesToNotMatchRegex(column="text", regex=CONTROL_CHARS_REGEX)
    )
    return suite


def _table_suite(gx):
    expectations = gx.expectations
    suite = gx.ExpectationSuite(name="cleaned_corpus_table")
    suite.add_expectation(expectations.ExpectColumnValuesToBeUnique(column="doc_id"))
    return suite


def _count_suite(gx):
    suite = gx.ExpectationSuite(name="cleaned_corpus_count")
    suite.add_expectation(gx.expectations.ExpectTableRowCountToBeBetween(min_value=1))
    return suite


def _id_key(doc_id: str) -> int:
    """A 64-bit key per id (equal ids, equal keys; distinct ids collide with p ≈ n²/2⁶⁵)."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "big")


def _describe(result) -> tuple[str, dict]:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    label = config.type + ("(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")")
    if getattr(result, "exception_info", None) and result.exception_info.get("raised_exception"):
        return label, {"error": result.exception_info.get("exception_message", "")[:500]}
    observed = {
        key: result.result[key]
        for key in (
            "observed_value",
            "element_count",
            "unexpected_count",
            "partial_unexpected_list",
        )
        if key in result.result
    }
    return label, observed


def _merge(summary: dict, label: str, success: bool, observed: dict) -> None:
    entry = summary.setdefault(label, {"success": True})
    entry["success"] = entry["success"] and success
    for key, value in observed.items():
        if key in ("element_count", "unexpected_count"):
            entry[key] = entry.get(key, 0) + int(value or 0)
        elif key == "partial_unexpected_list":
            examples = entry.setdefault("examples", [])
            examples.extend(repr(v)[:80] for v in value[: 5 - len(examples)])
        else:
            entry[key] = value if not isinstance(value, list) else value[:20]


def _validate_into(summary: dict, batch_definition, frame, suite) -> None:
    run = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    for result in run.results:
        label, observed = _describe(result)
        _merge(summary, label, result.success, observed)


def validate_cleaned_table(folder: Path, min_chars: int, max_chars: int) -> tuple[bool, dict]:
    """Run the suites over a cleaned-corpus folder; return (success, {expectation: observed})."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    source = context.data_sources.add_pandas("cleaned_corpus")
    batch_definition = source.add_dataframe_asset("parts").add_batch_definition_whole_dataframe(
        "part"
    )
    row_suite = context.suites.add(_row_suite(gx, min_chars, max_chars))
    table_suite = context.suites.add(_table_suite(gx))
    count_suite = context.suites.add(_count_suite(gx))

    summary: dict = {}
    parts = parquet_parts(folder)
    scratch = Path(tempfile.mkdtemp(prefix=".doc-ids-", dir=folder.parent))
    spill = KeySpill(scratch, partitions=ID_PARTITIONS)
    try:
        for part in parts:
            parquet = pq.ParquetFile(part, pre_buffer=False)
            for batch in parquet.iter_batches(batch_size=GX_BATCH_ROWS):
                frame = batch.to_pandas()
                run = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(
                    row_suite
                )
                for result in run.results:
                    label, observed = _describe(result)
                    _merge(summary, label, result.success, observed)
                if "doc_id" in frame:
                    keys = np.fromiter(
                        map(_id_key, frame["doc_id"].astype(str)), np.uint64, len(frame)
                    )
                    spill.add(keys, np.zeros(len(keys), np.uint32))
        # Equal ids always share a partition, so checking uniqueness partition by partition is
        # the whole-table check with one partition's ids in memory at a time.
        # At least one row: if the table has any, the first non-empty range has one.
        empty = pd.DataFrame({"doc_id": pd.Series([], dtype="uint64")})
        checks = (
            (pd.DataFrame({"doc_id": r["key"]}), table_suite) for r in spill.iter_partitions()
        )
        first = None
        for frame, suite in checks:
            first = frame if first is None else first
            _validate_into(summary, batch_definition, frame, suite)
        _validate_into(summary, batch_definition, empty if first is None else first, count_suite)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    success = all(entry["success"] for entry in summary.values())
    return success, summary


@asset_check(asset=cleaned_corpus, blocking=True, name="cleaned_corpus_expectations")
def cleaned_corpus_expectations(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """Required columns, non-empty text within the configured length bounds, unique doc_id,
    no control characters, at least one row — validated with great-expectations."""
    corpus = corpus_key(context.op_execution_context)
    folder = storage.cleaned(corpus)
    min_chars, max_chars = 1, 0
    settings = folder / CLEANING_FILE
    if settings.is_file():
        config = json.loads(settings.read_text())["config"]
        min_chars, max_chars = config["min_chars"], config["max_chars"]
    success, summary = validate_cleaned_table(folder, min_chars, max_chars)
    failed = [label for label, entry in summary.items() if not entry["success"]]
    return AssetCheckResult(
        passed=success,
        description="all expectations met" if success else "failed: " + "; ".join(failed),
        metadata={
            "expectations": MetadataValue.json(summary),
            "failed_expectations": len(failed),
            **{
                label.split("(")[0]: MetadataValue.text(
                    ("passed " if entry["success"] else "FAILED ")
                    + json.dumps({k: v for k, v in entry.items() if k != "success"})
                )
                for label, entry in summary.items()
            },
        },
    )
