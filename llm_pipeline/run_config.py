"""Run config from a `{stage: {key: value}}` YAML file, checked before anything runs.

One check for every entry point — `llm-pipeline run`, `materialize`, `backfill`, the retrain
schedule and the first step of a launchpad run — so each refuses the same mistakes with the
same few lines: the file (or "launchpad"), the stage, the key and the bound. No Dagster here:
the stages' settings are the core's (`*/settings.py`), and Dagster's `Config` classes derive
from them (assets/_config.py).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from llm_pipeline.errors import PipelineInputError
from llm_pipeline.lm.export_settings import EXPORTED_MODEL
from llm_pipeline.lm.settings import TRAINED_MODEL
from llm_pipeline.report.settings import EVALUATION_REPORT
from llm_pipeline.settings import SettingsError, Stage, nearest
from llm_pipeline.text.settings import CLEANED_CORPUS, RAW_CORPUS
from llm_pipeline.tokens.settings import TOKEN_SHARDS, TOKENIZER

# Pipeline order: a bad value is reported for the earliest stage that has one.
STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        RAW_CORPUS,
        CLEANED_CORPUS,
        TOKENIZER,
        TOKEN_SHARDS,
        TRAINED_MODEL,
        EVALUATION_REPORT,
        EXPORTED_MODEL,
    )
}


def check_stages(values: dict, source: str) -> dict:
    """`{stage: {key: value}}` checked against every stage's settings and rules.

    Returns the checked values (ints given for floats become floats); raises a SettingsError
    whose message starts with `source` (a file name, "launchpad", a schedule's variable).
    """
    if not isinstance(values, dict):
        raise SettingsError("", "expected a mapping {stage: {key: value}}", source)
    checked = {}
    for name, given in values.items():
        if name not in STAGES:
            problem = f"unknown asset(s) [{name!r}] ({nearest(str(name), STAGES)})"
            raise SettingsError("", problem, source)
        if given is None:
            given = {}
        if not isinstance(given, dict):
            raise SettingsError("", f"expected a mapping of settings, got {given!r}", source, name)
        try:
            checked[name] = STAGES[name].check(given)
        except SettingsError as exc:
            raise exc.located(source, name) from None
    return checked


def to_dagster(values: dict) -> dict:
    """`{stage: {key: value}}` as Dagster run config (`{"ops": {stage: {"config": ...}}}`)."""
    return {"ops": {name: {"config": given} for name, given in values.items()}}


def from_dagster(run_config: dict) -> dict:
    """The `{stage: {key: value}}` inside a Dagster run config (other ops are not stages)."""
    ops = (run_config or {}).get("ops") or {}
    return {
        name: (op or {}).get("config") or {}
        for name, op in ops.items()
        if name in STAGES and isinstance(op, dict)
    }


def load_run_config(path: str | None) -> dict:
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
    checked = check_stages(data, path)
    check_machine(checked, path)
    return to_dagster(checked)
