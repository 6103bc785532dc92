"""The great-expectations suite guarding `cleaned_corpus` (blocking: bad data never trains).

great-expectations 1.x is called directly (dagster-ge does not support 1.x) and imported inside
the check, because importing it costs about two seconds that definitions loading should not pay.
The suite runs per Parquet part (bounded memory); `doc_id` uniqueness runs on the id column of
the whole table, which is small.
"""

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue, asset_check

from llm_pipeline.assets.cleaned import CLEANING_FILE, cleaned_corpus
from llm_pipeline.partitions import corpus_key
from llm_pipeline.resources import StorageResource
from llm_pipeline.text.normalize import CONTROL_CHARS_REGEX
from llm_pipeline.text.store import parquet_parts

REQUIRED_COLUMNS = ["doc_id", "text", "n_chars", "source"]


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
    suite.add_expectation(expectations.ExpectTableRowCountToBeBetween(min_value=1))
    return suite


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

    summary: dict = {}
    parts = parquet_parts(folder)
    doc_ids = []
    for part in parts:
        parquet = pq.ParquetFile(part, pre_buffer=False)
        for batch in parquet.iter_batches(batch_size=20_000):
            frame = batch.to_pandas()
            run = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(
                row_suite
            )
            for result in run.results:
                label, observed = _describe(result)
                _merge(summary, label, result.success, observed)
            if "doc_id" in frame:
                doc_ids.append(frame["doc_id"])
    ids = pd.concat(doc_ids, ignore_index=True) if doc_ids else pd.Series([], dtype=str)
    run = batch_definition.get_batch(
        batch_parameters={"dataframe": pd.DataFrame({"doc_id": ids})}
    ).validate(table_suite)
    for result in run.results:
        label, observed = _describe(result)
        _merge(summary, label, result.success, observed)
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
