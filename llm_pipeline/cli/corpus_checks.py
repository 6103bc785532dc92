"""What `corpus add` checks before it registers a corpus, and `corpus remove`.

A corpus of no usable file used to be registered and only fail at run time, under a screenful
of skipped steps. So `corpus add` looks at what it placed: no file of a supported type, or none
from which a document can be read, is an error (exit 1) naming the files and the supported
types, and nothing is registered (a new corpus's folder is removed again). Only the first
document is read, so a large corpus is not read twice.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from llm_pipeline import paths
from llm_pipeline.cli.common import dagster_instance, unknown_corpus
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.text.read.corpus_files import SUPPORTED_DESCRIPTION, corpus_files, unusable_reason


class UnusableCorpusError(PipelineInputError):
    """A corpus folder with nothing a run could read: the add failed, exit status 1."""

    exit_code = 1


def check_usable(name: str, folder: Path) -> None:
    """Raise `UnusableCorpusError` unless `folder` holds a supported file with a document."""
    from llm_pipeline.text.read.readers import ReadStats, iter_documents

    files = corpus_files(folder) if folder.is_dir() else []
    problem = unusable_reason(folder, files)
    if problem is None:
        stats = ReadStats()
        if next(iter_documents(folder, files=files, stats=stats), None) is not None:
            return
        shown = "; ".join(stats.problems[:5])
        problem = f"no readable document in {folder}" + (f" ({shown})" if shown else "")
    if SUPPORTED_DESCRIPTION not in problem:
        problem += f"; supported: {SUPPORTED_DESCRIPTION}"
    raise UnusableCorpusError(
        f"corpus {name!r}: {problem}. Nothing was registered; add readable files with "
        f"`llm-pipeline corpus add {name} FILE...`"
    )


def corpus_folders(name: str) -> list[Path]:
    """Every folder the pipeline keeps for a corpus: raw files, stage outputs, models."""
    from llm_pipeline.lm.store.folders import corpus_models_dir

    return [
        paths.raw_dir(name),
        paths.documents_dir(name),
        paths.cleaned_dir(name),
        paths.tokens_dir(name),
        corpus_models_dir(name),
    ]


def corpus_remove(args: argparse.Namespace) -> int:
    """Unregister a corpus; its files and models stay unless `--purge`."""
    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME

    name = paths.validate_corpus_name(args.name)
    instance = dagster_instance()
    if not instance.has_dynamic_partition(CORPUS_PARTITIONS_NAME, name):
        raise unknown_corpus(name, instance.get_dynamic_partitions(CORPUS_PARTITIONS_NAME))
    instance.delete_dynamic_partition(CORPUS_PARTITIONS_NAME, name)
    print(f"corpus {name}: unregistered (its runs stay in the Dagster history)")
    existing = [folder for folder in corpus_folders(name) if folder.exists()]
    for folder in existing:
        if args.purge:
            if folder.is_symlink():  # never follow a link out of the data roots
                folder.unlink()
            else:
                shutil.rmtree(folder)
            print(f"  deleted {folder}")
        else:
            print(f"  kept {folder}")
    if existing and not args.purge:
        print("  (`llm-pipeline corpus remove NAME --purge` deletes them)")
    return 0
