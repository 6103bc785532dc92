"""Run config from a `{asset_name: {key: value}}` YAML file: one loader for the CLI, the
backfill command and `retrain_schedule`, so every entry point refuses the same mistakes."""

from __future__ import annotations

from pathlib import Path

import yaml

from llm_pipeline.errors import PipelineInputError


def load_run_config(path: str | None) -> dict:
    """Read a `{asset_name: {key: value}}` YAML file into Dagster run config."""
    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineInputError(f"{path}: cannot read config ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise PipelineInputError(f"{path}: expected a mapping {{asset_name: {{key: value}}}}")
    import pydantic

    from llm_pipeline.definitions import CONFIG_CLASSES

    unknown = sorted(set(data) - set(CONFIG_CLASSES))
    if unknown:
        raise PipelineInputError(
            f"{path}: unknown asset(s) {unknown}; known: {sorted(CONFIG_CLASSES)}"
        )
    for name, values in data.items():
        try:
            CONFIG_CLASSES[name](**values)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise PipelineInputError(f"{path}: {name}: {problems}") from None
    return {"ops": {name: {"config": values} for name, values in data.items()}}
