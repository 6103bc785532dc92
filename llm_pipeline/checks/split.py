"""Checks on the train/validation split of `cleaned_corpus` (both blocking: a bad split never
trains). `split_expectations` is a great-expectations suite: every row has a side, and the
validation share of bytes is within (0, 2 × val_fraction]. `split_leakage` measures, on the
table as written, the share of validation bytes in documents with at least half of their word
8-grams inside one training document (text/leakage.py), and fails above 1%. The figure
`cleaned_corpus` measured is taken when the parts are byte-identical to what it measured
(text/split_file.py), so a cleaning measures it once; edited parts are measured again."""

import os

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue, asset_check

from llm_pipeline.assets.cleaned import cleaned_corpus
from llm_pipeline.partitions import corpus_key
from llm_pipeline.resources import StorageResource
from llm_pipeline.text.leakage import LEAK_CONTAINMENT, MAX_LEAKED_SHARE, measure_leakage
from llm_pipeline.text.split import SPLIT_FILE, TRAIN, VAL
from llm_pipeline.text.split_file import SplitFileError, read_split, read_split_file
from llm_pipeline.text.store import parquet_parts


def validate_split(folder, val_fraction: float, allow_over: float = 0.0) -> tuple[bool, dict]:
    """Run the split suite over a cleaned folder; return (success, {expectation: observed})."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    source = context.data_sources.add_pandas("cleaned_split")
    batches = source.add_dataframe_asset("parts").add_batch_definition_whole_dataframe("part")
    rows = gx.ExpectationSuite(name="split_rows")
    rows.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column="split"))
    rows.add_expectation(
        gx.expectations.ExpectColumnValuesToBeInSet(column="split", value_set=[TRAIN, VAL])
    )
    rows = context.suites.add(rows)
    share = gx.ExpectationSuite(name="split_share")
    share.add_expectation(
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="val_byte_share",
            min_value=1e-12,
            max_value=max(2 * val_fraction, allow_over),
        )
    )
    share = context.suites.add(share)
    summary: dict = {}
    val_bytes = total = 0

    def record(result) -> None:
        config = result.expectation_config
        entry = summary.setdefault(config.type, {"success": True})
        entry["success"] = entry["success"] and result.success
        for key in ("unexpected_count", "observed_value"):
            if key in result.result:
                entry[key] = result.result[key]

    for part in parquet_parts(folder):
        parquet = pq.ParquetFile(part, pre_buffer=False)
        columns = [c for c in ("text", "split") if c in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(columns=columns, batch_size=20_000):
            sides = batch.column("split") if "split" in columns else None
            frame = pd.DataFrame({"split": sides.to_pandas() if sides is not None else None},
                                 index=range(batch.num_rows))  # fmt: skip
            for result in batches.get_batch({"dataframe": frame}).validate(rows).results:
                record(result)
            size = pc.binary_length(batch.column("text")).to_numpy(zero_copy_only=False)
            total += int(size.sum())
            if sides is not None:
                val_bytes += int(size[sides.to_numpy(zero_copy_only=False) == VAL].sum())
    frame = pd.DataFrame({"val_byte_share": [val_bytes / total if total else 0.0]})
    for result in batches.get_batch({"dataframe": frame}).validate(share).results:
        record(result)
    summary["val_byte_share"] = round(val_bytes / total, 6) if total else 0.0
    success = all(e["success"] for e in summary.values() if isinstance(e, dict))
    return success, summary


def _split_settings(folder) -> tuple[float, float]:
    """val_fraction as the split recorded it (split.json), and the share allowed over twice it
    when the split said no unit fits (a corpus of a few large documents)."""
    split = read_split(folder)
    return split.val_fraction, (0.0 if split.within_bounds else split.val_share)


@asset_check(asset=cleaned_corpus, blocking=True)
def split_expectations(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """Every row has a side (train or val) and the validation share of bytes is within
    (0, 2 × val_fraction] — validated with great-expectations."""
    folder = storage.cleaned(corpus_key(context.op_execution_context))
    try:
        settings = _split_settings(folder)
    except SplitFileError as exc:  # names the file and the reason
        return AssetCheckResult(passed=False, description=str(exc))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return AssetCheckResult(
            passed=False, description=f"{folder / SPLIT_FILE}: cannot be read ({exc})"
        )
    success, summary = validate_split(folder, *settings)
    return AssetCheckResult(
        passed=success,
        metadata={
            "expectations": MetadataValue.json(summary),
            "val_byte_share": summary["val_byte_share"],
        },
    )


@asset_check(asset=cleaned_corpus, blocking=True)
def split_leakage(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """At most 1% of validation bytes lie in documents with ≥50% of their word 8-grams inside
    one training document (measured on the table as written, in bounded memory)."""
    folder = storage.cleaned(corpus_key(context.op_execution_context))
    parts = parquet_parts(folder)
    try:
        leakage = read_split_file(folder).leakage_of(parts)
    except SplitFileError:
        leakage = None
    measured = "with the split (parts unchanged since)" if leakage else "by this check"
    if leakage is None:
        leakage = measure_leakage(parts, folder.parent)
    return AssetCheckResult(
        passed=leakage.share <= MAX_LEAKED_SHARE,
        description=f"{leakage.share:.2%} of validation bytes in documents with "
        f"≥{LEAK_CONTAINMENT:.0%} of their 8-grams in one training document "
        f"(bound {MAX_LEAKED_SHARE:.0%})",
        metadata={
            "leaked_val_byte_share": round(leakage.share, 6),
            "leaked_val_documents": leakage.leaked_docs,
            "contained_val_documents": leakage.contained_docs,
            "val_documents": leakage.val_docs,
            "val_bytes": leakage.val_bytes,
            "measured": measured,
        },
    )
