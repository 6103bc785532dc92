"""`raw_corpus`: a corpus's files under `data/raw/<corpus>/`, read into one document table."""

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from llm_pipeline.assets._common import (
    GROUP_DATA,
    check_run_config,
    clear_errors,
    problems_markdown,
)
from llm_pipeline.assets._config import stage_config
from llm_pipeline.atomic import atomic_dir
from llm_pipeline.partitions import corpus_key, corpus_partitions
from llm_pipeline.progress import Progress
from llm_pipeline.resources import StorageResource
from llm_pipeline.text.manifest import RawManifest
from llm_pipeline.text.readers import (
    SUPPORTED_DESCRIPTION,
    Document,
    ReadLimits,
    ReadStats,
    corpus_files,
    fingerprint_files,
    iter_documents,
)
from llm_pipeline.text.settings import RAW_CORPUS
from llm_pipeline.text.store import write_documents

RawCorpusConfig = stage_config(RAW_CORPUS)


def _file_sizes(folder: Path, files: list) -> dict[str, int]:
    """Bytes on disk of each file, by its path under `folder` (`Document.source`); links are not
    followed and an unreadable entry counts 0 (the reader skips it and names it)."""
    sizes = {}
    for path in files:
        try:
            sizes[Path(path).relative_to(folder).as_posix()] = os.lstat(path).st_size
        except (OSError, ValueError):
            continue
    return sizes


def counted_documents(
    documents: Iterator[Document], stats: ReadStats, progress: Progress, sizes: dict[str, int]
) -> Iterator[Document]:
    """Pass `documents` through, advancing `progress` in bytes of the files on disk (its total):
    for JSONL the reader's position in the file (exact, compressed or not); otherwise the text
    bytes it counted, at most the file's size; and the rest of a file once the next one
    starts. Text and file sizes differ (JSONL's quoting and keys, compressed or Parquet files),
    so counting text alone stopped JSONL corpora near two thirds before done. `sizes` maps each
    file's `Document.source` to its size."""
    seen = 0
    source, in_file = None, 0
    for document in documents:
        yield document
        if document.source != source:
            if source is not None:
                progress.advance(0, max(sizes.get(source, 0) - in_file, 0))
            source, in_file = document.source, 0
        size = sizes.get(source, 0)
        if stats.file_position is not None:
            step = max(min(stats.file_position, size) - in_file, 0)
        else:
            step = max(min(stats.bytes - seen, size - in_file), 0)
        seen = stats.bytes
        in_file += step
        progress.advance(1, step)
    progress.advance(0, max(progress.total_bytes - progress.bytes, 0))  # skipped files too


@asset(
    partitions_def=corpus_partitions,
    group_name=GROUP_DATA,
    kinds={"parquet"},
    code_version="1",
)
@clear_errors
def raw_corpus(
    context: AssetExecutionContext, config: RawCorpusConfig, storage: StorageResource
) -> MaterializeResult:
    """The corpus's raw files (.txt/.md/.jsonl/.parquet, optionally .gz/.zst) read as documents.

    Its data version is a hash of the files' paths and bytes (and of the reader settings), so
    downstream stages are stale exactly when the documents they would read changed. Bad files
    and lines are skipped and listed in the metadata.
    """
    check_run_config(context)
    corpus = corpus_key(context)
    folder = storage.raw(corpus)
    if not folder.is_dir():
        raise Failure(
            description=f"corpus {corpus!r}: folder {folder} does not exist; "
            f"add files with `llm-pipeline corpus add {corpus} SOURCE...`"
        )
    files = corpus_files(folder)
    if not files:
        raise Failure(description=f"corpus {corpus!r}: folder {folder} has no files")
    fingerprint = fingerprint_files(folder, files)
    stats = ReadStats()
    out = storage.documents(corpus)
    # Progress is in bytes of the files on disk, whatever their format (`counted_documents`).
    sizes = _file_sizes(folder, files)
    progress = Progress(sum(sizes.values()), "raw_corpus", context.log.info)
    with atomic_dir(out) as tmp:
        documents = counted_documents(
            iter_documents(
                folder,
                text_field=config.text_field,
                max_doc_chars=config.max_doc_chars,
                stats=stats,
                files=files,
                limits=ReadLimits.of(config),
                encoding_errors=config.encoding_errors,
            ),
            stats,
            progress,
            sizes,
        )
        write_documents(documents, tmp)
        progress.finish()
        if stats.documents == 0:
            problems = "\n".join(stats.problems) or "no problems reported"
            raise Failure(
                description=f"corpus {corpus!r}: no usable documents in {len(files)} file(s) "
                f"under {folder} (supported: {SUPPORTED_DESCRIPTION}).\n{problems}"
            )
        RawManifest(corpus=corpus, fingerprint=fingerprint, stats=stats.summary()).write(tmp)
    for problem in stats.problems:
        context.log.warning(problem)
    # The version covers the files *and* how they are read: a new text_field or max_doc_chars
    # changes the documents, so downstream stages must be stale then too.
    reader = json.dumps(config.model_dump(), sort_keys=True)
    version = hashlib.sha256(f"{fingerprint}\n{reader}".encode()).hexdigest()
    return MaterializeResult(
        data_version=DataVersion(version),
        metadata={
            "files": len(files),
            "files_read": stats.files_read,
            "files_skipped": stats.files_skipped,
            "lines_skipped": stats.lines_skipped,
            "documents": stats.documents,
            "chunked_documents": stats.chunked_documents,
            "bytes": stats.bytes,
            "replaced_bytes": stats.replaced_bytes,
            "files_with_replacements": stats.files_with_replacements,
            "files_decoded_as": MetadataValue.json(stats.decoded_as),
            "problems": problems_markdown(
                stats.problems, stats.files_skipped + stats.lines_skipped
            ),
            "fingerprint": fingerprint,
            "path": MetadataValue.path(str(out)),
        },
    )
