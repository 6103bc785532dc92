"""Run config from a `{stage: {key: value}}` YAML file, checked before anything runs.

One check for every entry point — `llm-pipeline run`, `materialize`, `backfill`, the retrain
schedule and the first step of a launchpad run — so each refuses the same mistakes with the
same few lines: the file (or "launchpad"), the stage, the key and the bound. The stages are
the asset graph's (`stage_assets.py`), each with the core settings (`*/settings.py`) its derived
`Config` shows; Dagster is imported on the first check, not with this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from llm_pipeline.errors import PipelineInputError
from llm_pipeline.settings_base import SettingsError, Stage, nearest

Stages = Mapping[str, Stage]


def check_stages(values: dict, source: str, stages: Stages) -> dict:
    """`{stage: {key: value}}` checked against every stage's settings and rules (`stages`: each
    stage's settings, from the asset graph: `asset_graph.stage_settings`).

    Returns the checked values (ints given for floats become floats); raises a SettingsError
    whose message starts with `source` (a file name, "launchpad", a schedule's variable).
    """
    if not isinstance(values, dict):
        raise SettingsError("", "expected a mapping {stage: {key: value}}", source)
    checked = {}
    for name, given in values.items():
        if name not in stages:
            problem = f"unknown asset(s) [{name!r}] ({nearest(str(name), stages)})"
            raise SettingsError("", problem, source)
        if given is None:
            given = {}
        if not isinstance(given, dict):
            raise SettingsError("", f"expected a mapping of settings, got {given!r}", source, name)
        try:
            checked[name] = stages[name].check(given)
        except SettingsError as exc:
            raise exc.located(source, name) from None
    return checked


def to_dagster(values: dict) -> dict:
    """`{stage: {key: value}}` as Dagster run config (`{"ops": {stage: {"config": ...}}}`)."""
    return {"ops": {name: {"config": given} for name, given in values.items()}}


def from_dagster(run_config: dict, stages: Stages) -> dict:
    """The `{stage: {key: value}}` inside a Dagster run config (other ops are not stages)."""
    ops = (run_config or {}).get("ops") or {}
    return {
        name: (op or {}).get("config") or {}
        for name, op in ops.items()
        if name in stages and isinstance(op, dict)
    }


def load_run_config(path: str | None, stages: Stages) -> dict:
    """Read and check a `{stage: {key: value}}` YAML file; return it as Dagster run config.

    Checked against the stages' rules and then against this machine (`preflight`: eval files,
    devices, tracking server), so a run that cannot work is refused before anything runs.
    """
    from llm_pipeline.preflight import check_machine

    if not path:
        check_machine({}, "run config")
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineInputError(f"{path}: cannot read config ({exc})") from None
    if not isinstance(data, dict):
        raise PipelineInputError(f"{path}: expected a mapping {{stage: {{key: value}}}}")
    # The checked values: `3.0` given for an integer becomes 3, so Dagster's own schema agrees.
    checked = check_stages(data, path, stages)
    check_machine(checked, path)
    return to_dagster(checked)
