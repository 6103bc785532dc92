"""`llm-pipeline doctor`: find runs whose worker died, mark them failed and free their slots.

A killed `llm-pipeline materialize` (or a run worker killed by the OOM killer, or a reboot) leaves
its run STARTED in the instance, holding its `gpu` pool slot. New runs and schedule ticks clear
such runs on their own (automation/dead_runs.py); this command shows and clears them on demand.
"""

from __future__ import annotations

import argparse

from llm_pipeline.cli.common import dagster_instance


def add_doctor_parser(commands) -> None:
    doctor = commands.add_parser(
        "doctor", help="list runs whose worker is gone; mark them failed and free their slots"
    )
    doctor.add_argument("--corpus", help="only this corpus's runs")
    doctor.add_argument("--dry-run", action="store_true", help="list them, change nothing")
    doctor.set_defaults(func=doctor_command)


def doctor_command(args: argparse.Namespace) -> int:
    """List dead runs and (unless --dry-run) clear them; exit 0 either way."""
    from llm_pipeline.automation.dead_runs import clear_dead_runs, survey_runs
    from llm_pipeline.dagster_compat import pool_slots_of_run

    instance = dagster_instance()
    dead, unknown = survey_runs(instance, args.corpus)
    for run in unknown:  # never cleared: this command cannot see their processes
        print(f"unknown run {run.run_id} [{run.corpus or '-'}] {run.job_name} ({run.status})")
        print(f"  {run.reason}")
    if not dead:
        print("no dead runs: every run the instance calls running has a live process"
              + (" or cannot be seen from here" if unknown else ""))  # fmt: skip
        return 0
    for run in dead:
        slots = pool_slots_of_run(instance, run.run_id)
        held = ", ".join(f"{n} {pool}" for pool, n in slots.items()) or "no"
        print(f"dead run {run.run_id} [{run.corpus or '-'}] {run.job_name} ({run.status})")
        print(f"  {run.reason}")
        print(f"  holds {held} pool slot(s)")
    if args.dry_run:
        print(f"{len(dead)} dead run(s); nothing changed (--dry-run)")
        return 0
    cleared = clear_dead_runs(instance, args.corpus)
    print(f"{len(cleared)} dead run(s) marked failed; their pool slots are free")
    return 0
