"""`llm-pipeline export`: a corpus's champion (or a named run) as a Hugging Face folder or GGUF."""

from __future__ import annotations

import argparse
from pathlib import Path

from llm_pipeline import paths
from llm_pipeline.lm.export.formats import EXPORT_FORMATS, all_dtypes


def _per_format(describe) -> str:
    """`hf: ...; gguf: ...`: one clause per registered format."""
    return "; ".join(f"{fmt.name}: {describe(fmt)}" for fmt in EXPORT_FORMATS.values())


def _dtypes_help(fmt) -> str:
    return ", ".join(d + " (default)" * (d == fmt.default_dtype) for d in fmt.dtypes)


def add_export_parser(commands: argparse._SubParsersAction) -> None:
    """The `export` subcommand's arguments."""
    export = commands.add_parser(
        "export", help="write a trained model as a Hugging Face folder or a GGUF file"
    )
    export.add_argument("--corpus", required=True)
    export.add_argument("--run", help="run id (default: the promoted model, else the newest)")
    export.add_argument("--format", required=True, choices=tuple(EXPORT_FORMATS))
    export.add_argument("--dtype", choices=all_dtypes(), help=_per_format(_dtypes_help))
    export.add_argument("--out", required=True, help=_per_format(lambda fmt: fmt.out_help))
    export.add_argument("--force", action="store_true", help="replace an existing export")
    export.set_defaults(func=export_model)


def export_model(args: argparse.Namespace) -> int:
    """Export one run; errors are PipelineInputErrors, shown by `main` as one line."""
    from llm_pipeline.lm.store.folders import resolve_run

    name = paths.validate_corpus_name(args.corpus)
    run = resolve_run(name, args.run)
    fmt = EXPORT_FORMATS[args.format]
    dtype = args.dtype or fmt.default_dtype
    written = fmt.write(run, Path(args.out), dtype=dtype, force=args.force)
    print(f"exported {name} run {run.name} ({args.format}, {dtype}) to {written}")
    return 0
