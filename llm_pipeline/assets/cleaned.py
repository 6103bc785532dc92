"""`cleaned_corpus`: normalised, quality-filtered, exact- and near-deduplicated documents."""

import os
from dataclasses import asdict

import pyarrow.parquet as pq
from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from llm_pipeline.assets._common import GROUP_DATA, check_run_config, clear_errors
from llm_pipeline.assets._config import stage_config
from llm_pipeline.assets.raw import raw_corpus
from llm_pipeline.atomic import atomic_dir, write_bytes_atomic, write_json_atomic
from llm_pipeline.partitions import corpus_key, corpus_partitions
from llm_pipeline.progress import batch_size_for
from llm_pipeline.report.plots import funnel_plot_png
from llm_pipeline.report.render import png_data_uri
from llm_pipeline.resources import StorageResource
from llm_pipeline.text.advice import cleaning_advice
from llm_pipeline.text.clean import (
    DROPPED_DIR,
    CleaningConfig,
    clean_documents,
    iter_document_batches,
)
from llm_pipeline.text.funnel import CLEANING_FILE
from llm_pipeline.text.leakage import Leakage, measure_leakage
from llm_pipeline.text.manifest import read_raw_manifest
from llm_pipeline.text.profiles import PROFILES
from llm_pipeline.text.settings import CLEANED_CORPUS, CleanedCorpusSettings
from llm_pipeline.text.split import SplitSummary
from llm_pipeline.text.split_file import SplitFile, parts_sha256, read_split, write_split_file
from llm_pipeline.text.store import parquet_parts

FUNNEL_FILE = "funnel.png"
# Documents per cleaning batch (the core's default); small corpora get smaller batches.
DOCUMENT_BATCH = 2048


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


class _CleanedCorpusMethods(Config):
    def cleaning(self) -> CleaningConfig:
        """The resolved core config; a SettingsError names a bad profile or threshold key."""
        return CleanedCorpusSettings.from_dict(self.model_dump()).cleaning()


CleanedCorpusConfig = stage_config(CLEANED_CORPUS, base=_CleanedCorpusMethods)


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
    (train/val, decided here once: text/split.py); `split.json` (sides, rule, leakage);
    `cleaning.json` (config and funnel counts),
    `funnel.png`, and a sample of removed documents per filter in `_dropped/<filter>.parquet`.
    """
    check_run_config(context)
    corpus = corpus_key(context)
    inputs = parquet_parts(storage.documents(corpus))
    if not inputs:
        raise Failure(description=f"corpus {corpus!r}: raw_corpus has no output; materialize it")
    try:
        cleaning = config.cleaning()
    except ValueError as exc:
        raise Failure(description=f"cleaned_corpus config: {exc}") from None
    workers = config.workers or os.cpu_count() or 1
    out = storage.cleaned(corpus)
    manifest = read_raw_manifest(storage.documents(corpus))
    total_bytes = int(manifest.stats.get("bytes", 0)) if manifest is not None else 0
    n_docs = sum(pq.ParquetFile(f).metadata.num_rows for f in inputs)
    with atomic_dir(out) as tmp:
        stats = clean_documents(
            iter_document_batches(inputs, batch_size_for(n_docs, DOCUMENT_BATCH)),
            tmp,
            cleaning,
            workers=workers,
            emit=context.log.info,
            total_bytes=total_bytes,
        )
        advice = cleaning_advice(stats, cleaning, tmp / DROPPED_DIR)
        if advice is not None:
            context.log.warning(advice.message(cleaning.profile))
        if stats.docs_out == 0:
            raise Failure(
                description=f"corpus {corpus!r}: no documents left after cleaning "
                f"({stats.docs_in} in; dropped: {stats.dropped}). Relax the filters in the "
                f"cleaned_corpus config (profile {cleaning.profile!r}; profiles: {PROFILES}) "
                "or add more text."
                + (f" {advice.message(cleaning.profile)}" if advice is not None else "")
            )
        split = read_split(tmp)
        problem = split.problem()
        if split.val_docs == 0 or split.train_docs == 0:
            raise Failure(
                description=f"corpus {corpus!r}: {stats.docs_out} document(s) left after "
                f"cleaning: {problem}"
            )
        if problem:  # too few units: the one case allowed outside the bounds
            context.log.warning(f"corpus {corpus!r}: split: {problem}")
        parts = parquet_parts(tmp)
        leakage = measure_leakage(parts)
        write_split_file(tmp, SplitFile(split, leakage, parts_sha256(parts)))
        funnel_png = funnel_plot_png(stats.funnel, stats.docs_in, stats.bytes_in)
        write_bytes_atomic(tmp / FUNNEL_FILE, funnel_png)
        write_json_atomic(
            tmp / CLEANING_FILE, {"config": asdict(cleaning), "stats": stats.to_dict()}
        )
    removed = {name: count for name, count in stats.dropped.items() if count}
    context.log.info(
        f"cleaned {stats.docs_in} → {stats.docs_out} documents at {stats.mb_per_s:.1f} MB/s "
        f"(profile {cleaning.profile}; removed {removed})"
    )
    table = ["| step | docs removed | MB removed | docs left |", "| --- | ---: | ---: | ---: |"]
    table += [
        f"| {r['step']} | {r['docs_removed']:,} | {r['bytes_removed'] / 1e6:,.3f} | "
        f"{r['docs_left']:,} |"
        for r in stats.funnel
    ]
    funnel_md = "\n".join([*table, "", f"![cleaning funnel]({png_data_uri(funnel_png)})"])
    return MaterializeResult(
        metadata={
            "profile": cleaning.profile,
            "docs_in": stats.docs_in,
            "docs_out": stats.docs_out,
            "bytes_in": stats.bytes_in,
            "bytes_out": stats.bytes_out,
            "dropped": MetadataValue.json(stats.dropped),
            "dropped_bytes": MetadataValue.json(stats.dropped_bytes),
            "drop_reasons": MetadataValue.json(stats.reasons),
            **{f"dropped_{name}": count for name, count in stats.dropped.items()},
            "c4_lines_removed": stats.lines_removed,
            "funnel": MetadataValue.md(funnel_md),
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
    )
