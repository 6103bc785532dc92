"""`llm-pipeline status --corpus NAME`: each stage's last materialization, its checks, and what
a rerun would redo (see `overview.py` for what counts as stale)."""

from __future__ import annotations

import argparse

from llm_pipeline import paths
from llm_pipeline.cli.common import dagster_instance, unknown_corpus


def corpus_status(args: argparse.Namespace) -> int:
    """Print the state of every stage of one corpus, its champion, and the stale stages."""
    name = paths.validate_corpus_name(args.corpus)
    instance = dagster_instance()
    from llm_pipeline.cli.overview import code_versions, read_champion, stage_states, when
    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME

    if not instance.has_dynamic_partition(CORPUS_PARTITIONS_NAME, name):
        raise unknown_corpus(name, instance.get_dynamic_partitions(CORPUS_PARTITIONS_NAME))
    states = stage_states(instance, name, code_versions())
    print(f"corpus {name}")
    for state in states:
        if state.materialized_at is None:
            print(f"  {state.name:<18} never materialized")
            continue
        checks = ", ".join(
            f"{check} {'passed' if ok else 'FAILED'}" for check, ok in sorted(state.checks.items())
        )
        print(f"  {state.name:<18} {when(state.materialized_at)}  run {state.run_id}")
        if checks:
            print(f"  {'':<18} checks: {checks}")
        for check, note in sorted(state.check_notes.items()):
            print(f"  {'':<18}   {check}: {note}")
        if state.stale_because:
            print(f"  {'':<18} stale: {state.stale_because}")
    champion = read_champion(name)
    print(f"  {champion.describe() if champion else 'no champion yet (no model promoted)'}")
    redo = [state.name for state in states if state.stale_because]
    if redo:
        print(f"a rerun would redo (stale): {', '.join(redo)}")
    else:
        print("up to date: nothing is stale")
    return 0
