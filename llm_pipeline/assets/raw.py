"""`raw_corpus`: a corpus's files under `data/raw/<corpus>/`, read into one document table."""

import hashlib
import json
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)

from llm_pipeline.assets._common import check_run_config, clear_errors, problems_markdown
from llm_pipeline.assets._config import stage_config
from llm_pipeline.partitions import corpus_key, corpus_partitions
from llm_pipeline.resources import StorageResource
from llm_pipeline.tags import GROUP_DATA
from llm_pipeline.text.settings import RAW_CORPUS
from llm_pipeline.text.stages import RawCorpus, read_corpus

RawCorpusConfig = stage_config(RAW_CORPUS)


def raw_metadata(result: RawCorpus, out: Path) -> dict:
    """The materialization's metadata: what was read and skipped, and the fingerprint."""
    stats = result.stats
    return {
        "files": result.files,
        "files_read": stats.files_read,
        "files_skipped": stats.files_skipped,
        "lines_skipped": stats.lines_skipped,
        "documents": stats.documents,
        "chunked_documents": stats.chunked_documents,
        "bytes": stats.bytes,
        "replaced_bytes": stats.replaced_bytes,
        "files_with_replacements": stats.files_with_replacements,
        "files_decoded_as": MetadataValue.json(stats.decoded_as),
        "problems": problems_markdown(stats.problems, stats.files_skipped + stats.lines_skipped),
        "fingerprint": result.fingerprint,
        "path": MetadataValue.path(str(out)),
    }


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
    and lines are skipped and listed in the metadata. The stage is `text.stages.read_corpus`.
    """
    check_run_config(context)
    corpus = corpus_key(context)
    folder, out = storage.raw(corpus), storage.documents(corpus)
    settings = config.settings()
    result = read_corpus(folder, out, corpus, settings, emit=context.log.info)
    for problem in result.stats.problems:
        context.log.warning(problem)
    # The version covers the files *and* how they are read: a new text_field or max_doc_chars
    # changes the documents, so downstream stages must be stale then too.
    reader = json.dumps(config.model_dump(), sort_keys=True)
    version = hashlib.sha256(f"{result.fingerprint}\n{reader}".encode()).hexdigest()
    return MaterializeResult(data_version=DataVersion(version), metadata=raw_metadata(result, out))
