"""`cleaned_corpus`: normalised, quality-filtered, exact- and near-deduplicated documents."""

import os
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from llm_pipeline.assets._common import check_run_config, clear_errors
from llm_pipeline.assets._config import stage_config
from llm_pipeline.assets.raw import raw_corpus
from llm_pipeline.atomic import atomic_dir, write_bytes_atomic
from llm_pipeline.partitions import corpus_key, corpus_partitions
from llm_pipeline.report.plots import funnel_plot_png
from llm_pipeline.report.render import png_data_uri
from llm_pipeline.resources import StorageResource
from llm_pipeline.tags import GROUP_DATA
from llm_pipeline.text.clean import DROPPED_DIR
from llm_pipeline.text.settings import CLEANED_CORPUS
from llm_pipeline.text.split.leakage import Leakage
from llm_pipeline.text.split.sides import SplitSummary
from llm_pipeline.text.stages import CleanedCorpus, clean_corpus, document_batches

FUNNEL_FILE = "funnel.png"


def split_markdown(split: SplitSummary, leakage: Leakage) -> str:
    """Documents and bytes per side, what the split did, and the overlap figures, for the UI."""
    return "\n".join(
        [
            "| side | documents | MB | share of bytes |",
            "| --- | ---: | ---: | ---: |",
            f"| train | {split.train_docs:,} | {split.train_bytes / 1e6:,.3f} | "
            f"{1 - split.val_share:.1%} |",
            f"| val | {split.val_docs:,} | {split.val_bytes / 1e6:,.3f} | {split.val_share:.1%} |",
            "",
            f"Validation bytes in documents with ≥50% of their 8-grams in one training document: "
            f"{leakage.share:.2%} ({leakage.leaked_docs} documents); validation 13-grams seen "
            f"in training text: {leakage.overlap:.2%}. Split: {split.mode}; {split.decisions()} "
            f"Rule: {split.rule}.",
            *(["", f"**Outside the bounds:** {problem}"] if (problem := split.problem()) else []),
        ]
    )


def funnel_markdown(funnel: list[dict], funnel_png: bytes) -> str:
    """The funnel as a table of what each step removed, with its plot inline, for the UI."""
    table = ["| step | docs removed | MB removed | docs left |", "| --- | ---: | ---: | ---: |"]
    table += [
        f"| {r['step']} | {r['docs_removed']:,} | {r['bytes_removed'] / 1e6:,.3f} | "
        f"{r['docs_left']:,} |"
        for r in funnel
    ]
    return "\n".join([*table, "", f"![cleaning funnel]({png_data_uri(funnel_png)})"])


def cleaned_metadata(result: CleanedCorpus, profile: str, funnel_png: bytes, out: Path) -> dict:
    """The materialization's metadata: the funnel's counts, the split's sides and overlap."""
    stats, split, leakage = result.stats, result.split, result.leakage
    return {
        "profile": profile,
        "docs_in": stats.docs_in,
        "docs_out": stats.docs_out,
        "bytes_in": stats.bytes_in,
        "bytes_out": stats.bytes_out,
        "dropped": MetadataValue.json(stats.dropped),
        "dropped_bytes": MetadataValue.json(stats.dropped_bytes),
        "drop_reasons": MetadataValue.json(stats.reasons),
        **{f"dropped_{name}": count for name, count in stats.dropped.items()},
        "c4_lines_removed": stats.lines_removed,
        "funnel": MetadataValue.md(funnel_markdown(stats.funnel, funnel_png)),
        "dropped_samples": MetadataValue.path(str(out / DROPPED_DIR)),
        "throughput_mb_per_s": round(stats.mb_per_s, 2),
        "parts": stats.parts,
        "split": MetadataValue.md(split_markdown(split, leakage)),
        "train_documents": split.train_docs,
        "val_documents": split.val_docs,
        "train_bytes": split.train_bytes,
        "val_bytes": split.val_bytes,
        "val_byte_share": round(split.val_share, 4),
        "val_bytes_leaked_share": round(leakage.share, 4),
        "val_13gram_overlap": round(leakage.overlap, 4),
        "split_units": split.units,
        "split_links_cut": split.links_cut,
        "passages_removed": stats.passages_removed,
        "path": MetadataValue.path(str(out)),
    }


CleanedCorpusConfig = stage_config(CLEANED_CORPUS)


@asset(
    partitions_def=corpus_partitions,
    deps=[raw_corpus],
    group_name=GROUP_DATA,
    kinds={"parquet"},
    code_version="3",
)
@clear_errors
def cleaned_corpus(
    context: AssetExecutionContext, config: CleanedCorpusConfig, storage: StorageResource
) -> MaterializeResult:
    """Documents after Unicode/whitespace normalisation, the profile's quality filters (Gopher,
    C4), exact dedup, MinHash near-dedup and passage dedup, with a funnel of what each step
    removed.

    Streams in two passes; output `data/cleaned/<corpus>/part-*.parquet` (zstd) with `doc_id`
    (content hash), `text`, `n_chars`, `source`, `split_key` (hash of the raw text) and `split`
    (train/val, decided here once: text/split/sides.py); `split.json` (sides, rule, leakage);
    `cleaning.json` (config and funnel counts),
    `funnel.png`, and a sample of removed documents per filter in `_dropped/<filter>.parquet`.
    The stage itself is `text.stages.clean_corpus`.
    """
    check_run_config(context)
    corpus = corpus_key(context)
    batches, total_bytes = document_batches(storage.documents(corpus), corpus)
    try:
        cleaning = config.settings().cleaning()
    except ValueError as exc:
        raise Failure(description=f"cleaned_corpus config: {exc}") from None
    out = storage.cleaned(corpus)
    with atomic_dir(out) as tmp:
        result = clean_corpus(
            batches, tmp, cleaning, corpus, workers=config.workers or os.cpu_count() or 1,
            total_bytes=total_bytes, emit=context.log.info, warn=context.log.warning,
        )  # fmt: skip
        stats = result.stats
        funnel_png = funnel_plot_png(stats.funnel, stats.docs_in, stats.bytes_in)
        write_bytes_atomic(tmp / FUNNEL_FILE, funnel_png)
    removed = {name: count for name, count in stats.dropped.items() if count}
    context.log.info(
        f"cleaned {stats.docs_in} → {stats.docs_out} documents at {stats.mb_per_s:.1f} MB/s "
        f"(profile {cleaning.profile}; removed {removed})"
    )
    metadata = cleaned_metadata(result, cleaning.profile, funnel_png, out)
    return MaterializeResult(metadata=metadata)
