"""`llm-pipeline schedule on|off` and `llm-pipeline sensor on|off`: the retraining schedule and
the new-corpus sensor, turned on or off in the instance the daemon reads.

The same state the UI's toggle and `dagster schedule start -w workspace.yaml` write, found in
`$DAGSTER_HOME` as every other command finds it (no environment to set by hand), and without the
`dagster` CLI's code-server process. Only a running daemon (`make ui`, `dagster-daemon run`)
ticks them.
"""

from __future__ import annotations

import argparse

import yaml

from llm_pipeline import paths
from llm_pipeline.cli.common import dagster_instance
from llm_pipeline.errors import PipelineInputError

DEFINITIONS_MODULE = "llm_pipeline.definitions"


def location_name() -> str:
    """The code location's name in `workspace.yaml` (what the daemon and the UI load)."""
    try:
        workspace = yaml.safe_load((paths.project_root() / "workspace.yaml").read_text())
        return str(workspace["load_from"][0]["python_module"]["location_name"])
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return "llm_pipeline"


def instigator_names(kind: str) -> list[str]:
    """The schedules (or sensors) of the definitions, by name."""
    from llm_pipeline.definitions import defs

    found = defs.schedules if kind == "schedule" else defs.sensors
    return [item.name for item in found or []]


def toggle(args: argparse.Namespace) -> int:
    """Turn a schedule or sensor on or off and say what changed."""
    from llm_pipeline.dagster_compat import set_instigator_running

    names = instigator_names(args.kind)
    name = args.name or (names[0] if len(names) == 1 else None)
    if name not in names:
        raise PipelineInputError(
            f"unknown {args.kind} {args.name!r}; {args.kind}s: {', '.join(names) or 'none'}"
        )
    running = args.state == "on"
    instance = dagster_instance()
    was = set_instigator_running(
        instance, DEFINITIONS_MODULE, location_name(), name, running, str(paths.project_root())
    )
    now = "on" if running else "off"
    change = f"turned {now}" if was != running else f"already {now}"
    print(f"{args.kind} {name}: {change}")
    if running:
        print("  it ticks while the Dagster daemon runs (`make ui` or `dagster-daemon run`)")
    return 0


def add_instigator_parsers(commands: argparse._SubParsersAction) -> None:
    """`schedule on|off [NAME]` and `sensor on|off [NAME]`."""
    for kind, default in (("schedule", "retrain_schedule"), ("sensor", "new_corpus_sensor")):
        parser = commands.add_parser(kind, help=f"turn the {kind} on or off (default {default})")
        parser.add_argument("state", choices=("on", "off"))
        parser.add_argument("name", nargs="?", default=None, help=f"default: {default}")
        parser.set_defaults(func=toggle, kind=kind)
