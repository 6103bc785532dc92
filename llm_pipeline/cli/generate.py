"""`llm-pipeline generate`: sample from the promoted (or a named) model of a corpus."""

from __future__ import annotations

import argparse
import sys

from llm_pipeline import paths


def generate_text(args: argparse.Namespace) -> int:
    """Sample from the promoted (or a named) model of a corpus."""
    import torch

    from llm_pipeline.lm.registry import resolve_run
    from llm_pipeline.lm.sampling import complete, load_run

    name = paths.validate_corpus_name(args.corpus)
    run = load_run(resolve_run(name, args.run))
    generator = torch.Generator().manual_seed(args.seed) if args.seed is not None else None
    stats: dict = {}
    text = complete(
        run,
        args.prompt,
        args.max_new_tokens,
        args.temperature,
        args.top_k,
        generator=generator,
        stats=stats,
    )
    print(args.prompt + text)
    print(
        f"[{stats['new_tokens']} tokens in {stats['seconds']:.2f} s, "
        f"{stats['tokens_per_s']:,.0f} tokens/s]",
        file=sys.stderr,
    )
    return 0
