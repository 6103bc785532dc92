"""Checks on the train/validation split of `cleaned_corpus`.

- `split_expectations` (blocking) is a great-expectations suite: every row has a side, and the
  validation share of bytes is within [val_fraction / 2, 2 × val_fraction] — or, where
  `split.json` says the corpus has too few units to split finer, strictly between 0 and 1 (both
  sides hold text). A failure names the cause (an empty side, one cluster holding the corpus, a
  split made by an older rule, parts changed after cleaning) and what to do.
- `split_leakage` (blocking) bounds the share of validation bytes in documents with at least half
  of their word 8-grams inside one training document at 1%, counted on every gram
  (text/split/leakage.py), and reports the share of validation 13-grams seen in training.
- `split_ngram_overlap` (a warning, not blocking) fails when more than 5% of validation word
  13-grams occur in training text (GPT-3's contamination measure): shared passages that no
  single training document holds, which passage dedup takes out.

The figures `cleaned_corpus` measured are taken when the parts are byte-identical to what it
measured (text/split/split_file.py), so a cleaning measures them once; edited parts are measured
again."""

import os

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from llm_pipeline.assets.cleaned import cleaned_corpus
from llm_pipeline.partitions import corpus_key
from llm_pipeline.resources import StorageResource
from llm_pipeline.text.split.leakage import (
    LEAK_CONTAINMENT,
    MAX_LEAKED_SHARE,
    MAX_OVERLAP_SHARE,
    OVERLAP_WORDS,
    Leakage,
    measure_leakage,
)
from llm_pipeline.text.split.sides import SPLIT_FILE, SPLIT_RULE_VERSION, TRAIN, VAL, SplitSummary
from llm_pipeline.text.split.split_file import SplitFileError, read_split, read_split_file
from llm_pipeline.text.store import parquet_parts


def validate_split(folder, low: float, high: float) -> tuple[bool, dict]:
    """Run the split suite over a cleaned folder: every row has a side and the validation share
    of bytes is within [low, high]; return (success, {expectation: observed})."""
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
            column="val_byte_share", min_value=low, max_value=high
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


# Strictly between 0 and 1: both sides hold bytes.
_SOME = 1e-9


def share_bounds(split: SplitSummary) -> tuple[float, float]:
    """The validation share the suite accepts: [val_fraction / 2, 2 × val_fraction], or (0, 1)
    when a split of today's rule says the corpus has too few units to split finer."""
    current = split.rule.startswith(f"v{SPLIT_RULE_VERSION}:")
    if current and not split.within_bounds:
        return _SOME, 1 - _SOME
    return split.val_fraction / 2, 2 * split.val_fraction


def split_cause(split: SplitSummary, share: float) -> str:
    """Why the table's validation share is out of bounds, and what to do, in one line."""
    low, high = share_bounds(split)
    if share <= 0:
        where = "the validation side is empty"
    elif share >= 1:
        where = "the training side is empty"
    else:
        where = f"validation holds {share:.1%} of the bytes, outside [{low:.1%}, {high:.1%}]"
    if not split.rule.startswith(f"v{SPLIT_RULE_VERSION}:"):
        return (
            f"{where}; the split was made by an older rule ({split.rule.split(':')[0]}), which "
            "let links between documents chain the corpus into one cluster: materialize "
            "cleaned_corpus again"
        )
    if abs(split.val_share - share) > 1e-6:
        return (
            f"{where}; the parts do not match {SPLIT_FILE}, which records "
            f"{split.val_share:.1%} in validation (edited after cleaning?): materialize "
            "cleaned_corpus again"
        )
    if split.largest_unit_share > high and split.units <= 1:
        return f"{where}; one cluster holds {split.largest_unit_share:.0%} of the bytes"
    return f"{where}; {split.problem() or 'materialize cleaned_corpus again'}"


@asset_check(asset=cleaned_corpus, blocking=True)
def split_expectations(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """Every row has a side (train or val) and the validation share of bytes is within
    [val_fraction / 2, 2 × val_fraction] (both sides non-empty where the corpus has too few
    units) — validated with great-expectations; a failure names the cause."""
    folder = storage.cleaned(corpus_key(context.op_execution_context))
    try:
        split = read_split(folder)
    except SplitFileError as exc:  # names the file and the reason
        return AssetCheckResult(passed=False, description=str(exc))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return AssetCheckResult(
            passed=False, description=f"{folder / SPLIT_FILE}: cannot be read ({exc})"
        )
    success, summary = validate_split(folder, *share_bounds(split))
    share = summary["val_byte_share"]
    rows_ok = all(
        entry["success"]
        for name, entry in summary.items()
        if isinstance(entry, dict) and "between" not in name
    )
    description = None
    if not rows_ok:
        description = "rows without a side (train or val): materialize cleaned_corpus again"
    elif not success:
        description = split_cause(split, share)
    return AssetCheckResult(
        passed=success,
        description=description,
        metadata={
            "expectations": MetadataValue.json(summary),
            "val_byte_share": share,
            "bounds": MetadataValue.json(list(share_bounds(split))),
        },
    )


def _leakage(context: AssetCheckExecutionContext, storage: StorageResource) -> tuple[Leakage, dict]:
    """The leakage of the cleaned parts as written, and the checks' metadata for it: the figure
    cleaning recorded if the parts are the bytes it measured, else measured now."""
    folder = storage.cleaned(corpus_key(context.op_execution_context))
    parts = parquet_parts(folder)
    try:
        leakage = read_split_file(folder).leakage_of(parts)
    except SplitFileError:
        leakage = None
    measured = "with the split (parts unchanged since)"
    if leakage is None:
        leakage, measured = measure_leakage(parts), "by this check"
    return leakage, {
        "leaked_val_byte_share": round(leakage.share, 6),
        "leaked_val_documents": leakage.leaked_docs,
        "contained_val_documents": leakage.contained_docs,
        "val_documents": leakage.val_docs,
        "val_bytes": leakage.val_bytes,
        "measured_val_documents": leakage.measured_docs,
        f"val_{OVERLAP_WORDS}gram_overlap": round(leakage.overlap, 6),
        "measured": measured,
    }


@asset_check(asset=cleaned_corpus, blocking=True)
def split_leakage(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """At most 1% of validation bytes lie in documents with ≥50% of their word 8-grams inside
    one training document (every gram counted, in bounded memory), with the share of validation
    13-grams seen in training alongside."""
    leakage, metadata = _leakage(context, storage)
    passed = leakage.share <= MAX_LEAKED_SHARE
    description = (
        f"{leakage.share:.2%} of validation bytes in documents with "
        f"≥{LEAK_CONTAINMENT:.0%} of their 8-grams in one training document "
        f"(bound {MAX_LEAKED_SHARE:.0%}); {leakage.overlap:.2%} of validation "
        f"{OVERLAP_WORDS}-grams occur in training text"
    )
    if not passed:
        description += (
            ": training documents hold most of these validation ones. Turn passage_dedup on "
            "if it is off (passages shared across documents); if the parts were edited after "
            f"cleaning, materialize cleaned_corpus again; else {SPLIT_FILE} says how many "
            "links the split had to cut to keep every cluster within val_fraction (links_cut)"
        )
    return AssetCheckResult(passed=passed, description=description, metadata=metadata)


@asset_check(asset=cleaned_corpus, blocking=False)
def split_ngram_overlap(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """A warning when more than 5% of validation word 13-grams occur in training text: passages
    the two sides share (boilerplate, quotes, a clause library), which inflate validation
    scores; passage dedup takes them out."""
    leakage, metadata = _leakage(context, storage)
    passed = leakage.overlap <= MAX_OVERLAP_SHARE
    description = (
        f"{leakage.overlap:.2%} of validation {OVERLAP_WORDS}-grams occur in training text "
        f"(bound {MAX_OVERLAP_SHARE:.0%})"
    )
    if not passed:
        description += (
            ": the sides share passages; keep passage_dedup on (off in the code profile) or "
            "lower passage_min_words"
        )
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )
