#!/usr/bin/env python
"""The datatrove side of `clean.py --datatrove-mb`: Gopher repetition + quality, then MinHash.

Runs in its own virtual environment (`benchmarks/.work/datatrove-venv`, see `clean.py`), never in
the project's: datatrove is a contender here, not a dependency. Reads `<input>/*.jsonl` (fields
`id`, `text`), runs datatrove's own recipe (filters, MinHash signatures, buckets, clusters,
filter; 5-grams, 14 buckets x 8 hashes, its defaults), and prints one JSON line: wall seconds of
the pipeline and the ids of the documents it kept.

    datatrove-venv/bin/python benchmarks/datatrove_pipeline.py INPUT WORK --workers N
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# The sibling tokenize.py would shadow the standard library's (see clean.py): drop this folder.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import gzip
import json
import shutil
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("work")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    n = args.workers
    config = MinhashConfig()
    started = time.perf_counter()

    def executor(pipeline, tasks, name, depends=None, workers=n):
        return LocalPipelineExecutor(
            pipeline=pipeline,
            tasks=tasks,
            workers=workers,
            logging_dir=str(work / "logs" / name),
            depends=depends,
            skip_completed=False,
        )

    filtered = str(work / "filtered")
    filters = executor(
        [
            JsonlReader(args.input),
            GopherRepetitionFilter(),
            GopherQualityFilter(),
            JsonlWriter(filtered, compression=None),
        ],
        n,
        "filters",
    )
    signatures = executor(
        [
            JsonlReader(filtered),
            MinhashDedupSignature(output_folder=str(work / "sigs"), config=config),
        ],
        n,
        "signatures",
        filters,
    )
    buckets = executor(
        [
            MinhashDedupBuckets(
                input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=config
            )
        ],
        config.num_buckets,
        "buckets",
        signatures,
    )
    clusters = executor(
        [
            MinhashDedupCluster(
                input_folder=str(work / "buckets"),
                output_folder=str(work / "remove_ids"),
                config=config,
            )
        ],
        1,
        "clusters",
        buckets,
        workers=1,
    )
    final = executor(
        [
            JsonlReader(filtered),
            MinhashDedupFilter(input_folder=str(work / "remove_ids")),
            JsonlWriter(str(work / "final"), compression=None),
        ],
        n,
        "final",
        clusters,
    )
    final.run()
    seconds = time.perf_counter() - started

    def ids(folder: Path) -> list[str]:
        out = []
        for path in sorted(folder.glob("*.jsonl*")):
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt") as fh:
                out += [json.loads(line)["id"] for line in fh]
        return out

    after_filters = ids(work / "filtered")
    kept = ids(work / "final")
    print(
        json.dumps({"seconds": seconds, "after_filters": after_filters, "kept": kept, "workers": n})
    )


if __name__ == "__main__":
    main()
