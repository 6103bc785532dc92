#!/usr/bin/env python
"""Benchmark of the everyday rerun: seconds from `llm-pipeline run` to the first training step,
on a corpus whose data stages are already materialized and unchanged, side by side in one run:

- everything: `run --force` (what `run` did before it learned to skip up-to-date stages);
- from training: `run --from trained_model` (the data stages skipped);
- and `run` with nothing changed: seconds until it has said so and exited.

The corpus is the built-in one (2.3 MB of standard-library docstrings), trained for a few steps
with `log_interval: 1`, so the first progress line of the trainer (`step 1 ...`) marks the first
training step. Each contender runs `--repeat` times in rotating order; the fastest is kept.

    .venv/bin/python benchmarks/rerun.py [--repeat 2] [--workdir benchmarks/.work/rerun]
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import os
import subprocess
import time

CONFIG = """tokenizer: {vocab_size: 512}
trained_model: {max_steps: 5, max_seconds: 0, log_interval: 1, eval_interval: 5, measure_mfu: false}
evaluation_report: {max_new_tokens: 4}
"""
CORPUS = "python-stdlib-docs"
FIRST_STEP = "step 1:"


def cli(args: list[str], env: dict, until: str | None = None) -> float:
    """Seconds from starting `llm-pipeline ARGS` to the first output line holding `until` (or
    to its exit); the command is then let run to its end."""
    command = [sys.executable, "-c", "import sys; from llm_pipeline.cli import main; "
               "sys.exit(main())", *args]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if seen is None and until is not None and until in line:
            seen = time.perf_counter() - start
    if proc.wait() not in (0, 1):
        raise SystemExit(f"llm-pipeline {' '.join(args)} failed ({proc.returncode})")
    if until is not None and seen is None:
        raise SystemExit(f"llm-pipeline {' '.join(args)}: no line with {until!r}")
    return seen if seen is not None else time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", default=str(_HERE / ".work" / "rerun"))
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(work / "dagster_home"),
        "LLM_PIPELINE_DATA_DIR": str(work / "data"),
        "LLM_PIPELINE_MODELS_DIR": str(work / "models"),
    }
    config = work / "config.yaml"
    config.write_text(CONFIG)
    base = ["--corpus", CORPUS, "--config", str(config)]
    cli(["corpus", "add", CORPUS, "--builtin", "--if-missing"], env)
    cli(["run", *base], env)  # materialize everything once
    contenders = {
        "run --force (everything)": (["run", *base, "--force"], FIRST_STEP),
        "run --from trained_model": (["run", *base, "--from", "trained_model"], FIRST_STEP),
        "run, nothing changed (to exit)": (["run", *base], None),
    }
    best: dict[str, float] = {}
    names = list(contenders)
    for round_ in range(args.repeat):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            argv, until = contenders[name]
            best[name] = min(best.get(name, float("inf")), cli(argv, env, until))
    print(f"rerun benchmark: corpus {CORPUS}, best of {args.repeat}")
    for name in names:
        print(f"  {name:<34} {best[name]:6.1f} s")
    everything, training = best[names[0]], best[names[1]]
    print(f"first training step, --from trained_model / --force: {training / everything:.2f}")


if __name__ == "__main__":
    main()
