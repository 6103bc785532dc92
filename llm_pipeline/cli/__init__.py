"""The `llm-pipeline` command: register corpora, list them, materialize the graph for one.

Everything goes through the Dagster instance in `$DAGSTER_HOME`, so what the CLI does shows up
in the UI (runs, partitions, materializations) exactly as if it had been launched there.
"""

from __future__ import annotations

import argparse
import sys

from llm_pipeline.cli.corpus import add_download_arguments, corpus_add, corpus_list, place_sources
from llm_pipeline.cli.corpus_checks import corpus_remove
from llm_pipeline.cli.doctor import add_doctor_parser
from llm_pipeline.cli.export import add_export_parser
from llm_pipeline.cli.generate import generate_text
from llm_pipeline.cli.instigators import add_instigator_parsers
from llm_pipeline.cli.runs import (
    DEFAULT_JOB,
    backfill,
    materialize,
    run_pipeline,
)
from llm_pipeline.cli.status import corpus_status
from llm_pipeline.cli.ui import add_ui_parser
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.terminal import escaped_output

__all__ = ["build_parser", "main", "place_sources"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    corpus = commands.add_parser("corpus", help="register and list corpora")
    corpus_commands = corpus.add_subparsers(dest="corpus_command", required=True)
    add = corpus_commands.add_parser("add", help="place sources under data/raw/NAME and register")
    add.add_argument("name", metavar="NAME")
    add.add_argument("sources", metavar="SOURCE", nargs="*", help="file, folder, glob or URL")
    add.add_argument("--builtin", action="store_true", help="create the built-in corpus")
    add.add_argument("--if-missing", action="store_true", help="do nothing if already present")
    add.add_argument("--force", action="store_true", help="replace files that differ")
    add_download_arguments(add)
    add.set_defaults(func=corpus_add)
    remove = corpus_commands.add_parser(
        "remove", help="unregister a corpus (its files and models kept unless --purge)"
    )
    remove.add_argument("name", metavar="NAME")
    remove.add_argument(
        "--purge", action="store_true", help="also delete its raw files, stage outputs, models"
    )
    remove.set_defaults(func=corpus_remove)
    listing = corpus_commands.add_parser(
        "list", help="corpora, sizes, materialized stages, champions"
    )
    listing.set_defaults(func=corpus_list)

    run = commands.add_parser("materialize", help="materialize the pipeline for one corpus")
    run.add_argument("--corpus", required=True)
    run.add_argument("--config", help="YAML file {asset_name: {key: value}}")
    run.add_argument("--job", default=DEFAULT_JOB, help=f"job to run (default {DEFAULT_JOB})")
    run.set_defaults(func=materialize)

    whole = commands.add_parser(
        "run", help="materialize what is missing or stale in the graph for one corpus"
    )
    whole.add_argument("--corpus", required=True)
    whole.add_argument("--config", help="YAML file {asset_name: {key: value}}")
    rerun = whole.add_mutually_exclusive_group()
    rerun.add_argument(
        "--from",
        dest="stage",
        metavar="STAGE",
        help="rerun STAGE and everything after it, whether stale or not",
    )
    rerun.add_argument("--force", action="store_true", help="rerun every stage")
    whole.set_defaults(func=run_pipeline)

    fill = commands.add_parser(
        "backfill", help="submit a backfill of the graph for corpora (run by the daemon)"
    )
    which = fill.add_mutually_exclusive_group(required=True)
    which.add_argument("--corpus", help="comma-separated corpus names")
    which.add_argument("--all", action="store_true", help="every registered corpus")
    fill.add_argument(
        "--from",
        dest="stage",
        metavar="STAGE",
        # No default named here: the stages come from the asset graph, which imports torch.
        help="first stage to rebuild, with everything downstream (default: the first stage)",
    )
    fill.add_argument("--config", help="YAML file {asset_name: {key: value}} for its runs")
    fill.set_defaults(func=backfill)

    status = commands.add_parser(
        "status", help="a corpus's stages, checks, champion and what a rerun would redo"
    )
    status.add_argument("--corpus", required=True)
    status.set_defaults(func=corpus_status)

    sample = commands.add_parser("generate", help="sample text from a trained model")
    sample.add_argument("--corpus", required=True)
    sample.add_argument("--run", help="run id (default: the promoted model)")
    sample.add_argument("--prompt", required=True)
    sample.add_argument("--max-new-tokens", type=int, default=100)
    sample.add_argument("--temperature", type=float, default=0.8)
    sample.add_argument("--top-k", type=int, default=40)
    sample.add_argument("--seed", type=int, default=None)
    sample.set_defaults(func=generate_text)

    add_export_parser(commands)
    add_instigator_parsers(commands)
    add_doctor_parser(commands)
    add_ui_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `llm-pipeline` console script."""
    args = build_parser().parse_args(argv)
    # Names, reasons and generated text come from files and servers: escaped on the way out.
    with escaped_output():
        try:
            return args.func(args)
        except PipelineInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return getattr(exc, "exit_code", 2)


if __name__ == "__main__":
    sys.exit(main())
