"""`raw_corpus`: a corpus's files under `data/raw/<corpus>/`, read into one document table."""

import hashlib
import json
import os
from collections.abc import Iterator

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


def _total_size(files: list) -> int:
    """Bytes of the files on disk (links not followed; an unreadable entry counts 0: the reader
    skips it and names it)."""
    total = 0
    for path in files:
        try:
            total += os.lstat(path).st_size
        except OSError:
            continue
    return total


def counted_documents(
    documents: Iterator[Document], stats: ReadStats, progress: Progress
) -> Iterator[Document]:
    """Pass `documents` through, advancing `progress` by the bytes the reader counted."""
    seen = 0
    for document in documents:
        yield document
        progress.advance(1, stats.bytes - seen)
        seen = stats.bytes


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
    # The total is the files' size on disk: exact for plain text, a lower bound when compressed.
    progress = Progress(_total_size(files), "raw_corpus", context.log.info)
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
        )
        write_documents(documents, tmp)
        progress.finish()
        if stats.documents == 0:
            problems = "\n".join(stats.problems) or "no problems reported"
            raise Failure(
                description=f"corpus {corpus!r}: no usable documents in {len(files)} file(s) "
                f"under {folder} (supported: {SUPPORTED_DESCRIPTION}).\n{problems}"
            )
        RawManifest(corpus=corpus, fingerprint=fingerprint, stats=vars(stats)).write(tmp)
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
