"""`llm-pipeline generate`: sample from the promoted (or a named) model of a corpus.

Which model answered is always said on stderr: the champion, the one asked for, or (when the
corpus has no champion) the latest model, named as a fallback."""

from __future__ import annotations

import argparse
import sys

from llm_pipeline import paths


def check_sampling(args: argparse.Namespace) -> None:
    """The sampling flags checked by the report's own sample settings (their bounds are written
    once, in report/settings.py): a negative temperature or top-k is refused, not sampled."""
    from llm_pipeline.report.settings import EvaluationReportSettings
    from llm_pipeline.settings_base import SettingsError

    given = {"temperature": args.temperature, "top_k": args.top_k}
    given["max_new_tokens"] = args.max_new_tokens
    try:
        EvaluationReportSettings.from_dict(given)
    except SettingsError as exc:
        raise exc.located("generate", "") from None


def generate_text(args: argparse.Namespace) -> int:
    """Sample from the promoted (or a named) model of a corpus."""
    import torch

    from llm_pipeline.lm.model.sampling import complete, load_run
    from llm_pipeline.lm.store.folders import choose_run

    name = paths.validate_corpus_name(args.corpus)
    check_sampling(args)
    folder, why = choose_run(name, args.run)
    if why == "latest":
        print(
            f"corpus {name!r} has no champion (no model has been promoted by its report); "
            f"falling back to the latest model, {folder.name}, which may have failed its checks",
            file=sys.stderr,
        )
    else:
        print(f"[model {folder.name} ({why})]", file=sys.stderr)
    run = load_run(folder)
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
    output = args.prompt + text
    # Always end with one newline, so a shell prompt never lands on the text's last line.
    sys.stdout.write(output if output.endswith("\n") else output + "\n")
    print(
        f"[{stats['new_tokens']} tokens in {stats['seconds']:.2f} s, "
        f"{stats['tokens_per_s']:,.0f} tokens/s]",
        file=sys.stderr,
    )
    return 0
