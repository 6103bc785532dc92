"""What the CLI's commands share: the Dagster instance and byte formatting."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path

from llm_pipeline import paths
from llm_pipeline.errors import PipelineInputError

# The instance settings `make ui` and the CLI write when `$DAGSTER_HOME` has none. Run monitoring
# (run by the daemon that `make ui` starts) fails runs stuck STARTING, frees the pool slots of
# finished runs, and notices dead run workers where the launcher can tell (k8s, docker); runs of
# the default launcher and in-process runs are cleared by automation/dead_runs.py instead.
DAGSTER_YAML = """telemetry:
  enabled: false
run_monitoring:
  enabled: true
  start_timeout_seconds: 300
  cancel_timeout_seconds: 300
  poll_interval_seconds: 60
  free_slots_after_run_end_seconds: 60
"""


def dagster_instance():
    """The Dagster instance; `$DAGSTER_HOME` defaults to `.dagster_home/` in the project."""
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(paths.project_root() / ".dagster_home")
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        # An explicit instance config also silences Dagster's first-run banner.
        settings.write_text(DAGSTER_YAML)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from dagster import DagsterInstance

    return DagsterInstance.get()


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest known name, or "" when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_corpus(name: str, registered: Iterable[str]) -> PipelineInputError:
    """The error for a corpus name that is not registered: the closest registered name, else
    how to add it."""
    registered = sorted(registered)
    hint = did_you_mean(name, registered)
    known = ", ".join(registered) or "none"
    return PipelineInputError(
        f"corpus {name!r} is not registered{hint} (registered: {known}); "
        f"add it with `llm-pipeline corpus add {name} SOURCE...`"
    )
