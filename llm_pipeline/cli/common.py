"""What the CLI's commands share: the Dagster instance and byte formatting."""

from __future__ import annotations

import os
from pathlib import Path

from llm_pipeline import paths


def dagster_instance():
    """The Dagster instance; `$DAGSTER_HOME` defaults to `.dagster_home/` in the project."""
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(paths.project_root() / ".dagster_home")
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        # An explicit (empty-ish) instance config silences Dagster's first-run banner.
        settings.write_text("telemetry:\n  enabled: false\n")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from dagster import DagsterInstance

    return DagsterInstance.get()


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
