"""`llm-pipeline export`: a corpus's champion (or a named run) as a Hugging Face folder or GGUF."""

from __future__ import annotations

import argparse
from pathlib import Path

from llm_pipeline import paths

FORMATS = ("hf", "gguf")
DEFAULT_DTYPE = {"hf": "f32", "gguf": "f16"}


def add_export_parser(commands: argparse._SubParsersAction) -> None:
    """The `export` subcommand's arguments."""
    export = commands.add_parser(
        "export", help="write a trained model as a Hugging Face folder or a GGUF file"
    )
    export.add_argument("--corpus", required=True)
    export.add_argument("--run", help="run id (default: the promoted model, else the newest)")
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument(
        "--dtype",
        choices=("f32", "f16", "bf16", "q8_0"),
        help="hf: f32 (default), f16, bf16; gguf: f16 (default), bf16, q8_0",
    )
    export.add_argument(
        "--out", required=True, help="hf: the model folder; gguf: the folder for <corpus>.gguf"
    )
    export.add_argument("--force", action="store_true", help="replace an existing export")
    export.set_defaults(func=export_model)


def export_model(args: argparse.Namespace) -> int:
    """Export one run; errors are PipelineInputErrors, shown by `main` as one line."""
    from llm_pipeline.lm.export import export_gguf, export_hf
    from llm_pipeline.lm.registry import resolve_run

    name = paths.validate_corpus_name(args.corpus)
    run = resolve_run(name, args.run)
    dtype = args.dtype or DEFAULT_DTYPE[args.format]
    if args.format == "hf":
        written = export_hf(run, Path(args.out), dtype=dtype, force=args.force)
    else:
        written = export_gguf(run, Path(args.out), dtype=dtype, force=args.force)
    print(f"exported {name} run {run.name} ({args.format}, {dtype}) to {written}")
    return 0
