"""What `llm-pipeline run` redoes: the stages that are missing or stale, and why each other is
skipped; `--from STAGE` and `--force` choose by hand.

Stale is what `status` shows (`overview.stage_states`: never materialized, older code, an input
materialized since, raw files changed) plus two things only this module knows about:

- the stage's settings changed: the run config a stage was last materialized with (kept with
  its Dagster run) against the one this run would use, both resolved through the stage's
  settings model, so a default written out is no change. Machine settings (threads, device,
  workers, ...: `ignored_keys()`) change how a stage runs, not what it makes, and are ignored;
- one of its blocking checks failed last time: what it made was refused, and only making it
  again runs the check that keeps the stages after it from using it. A model whose
  (non-blocking) checks failed is not retrained for that alone: the same settings would train
  the same model; its report says what to change.

Dagster's own stale status (`CachingStaleStatusResolver`) sees code versions and upstream
materializations, which `stage_states` mirrors; it sees neither the run config nor files outside
Dagster (the raw folder), and those are the common reasons to rerun, hence this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llm_pipeline.errors import PipelineInputError

# `workers`: cleaning processes; the rest: lm/settings.py MACHINE_SETTINGS and bookkeeping.
EXTRA_IGNORED_KEYS = frozenset({"workers"})


def ignored_keys() -> frozenset[str]:
    """Settings that never make a stage stale: how it runs, not what it makes."""
    from llm_pipeline.lm.settings import NOT_COMPARED

    return NOT_COMPARED | EXTRA_IGNORED_KEYS


@dataclass
class RunPlan:
    """The stages to run (upstream first) with why, and the ones skipped with why."""

    run: dict[str, str] = field(default_factory=dict)
    skip: dict[str, str] = field(default_factory=dict)

    def describe(self) -> list[str]:
        """Lines for the terminal: one per stage, what happens to it and why."""
        lines = [f"skip {name}: {why}" for name, why in self.skip.items()]
        lines += [f"run  {name}: {why}" for name, why in self.run.items()]
        return lines


def resolved(stage: str, given: dict) -> dict[str, Any] | None:
    """A stage's settings as a run would use them, less the ignored keys; None when the
    settings cannot be read (a config from an older version: treated as changed)."""
    from llm_pipeline.stage_assets import registered_settings

    try:
        values = registered_settings()[stage].settings(given).to_dict()
    except (PipelineInputError, ValueError, TypeError):
        return None
    return {k: v for k, v in values.items() if k not in ignored_keys()}


def settings_change(stage: str, before: dict, now: dict) -> str | None:
    """What differs between the settings a stage was made with and those it would run with."""
    old, new = resolved(stage, before), resolved(stage, now)
    if old is None or new is None:
        return "its settings could not be compared" if old != new or old is None else None
    changed = sorted(k for k in new if old.get(k) != new[k])
    if not changed:
        return None
    return "settings changed: " + ", ".join(f"{k} ({old.get(k)!r} → {new[k]!r})" for k in changed)


def blocking(asset: str, check: str) -> bool:
    """Whether a check stops what is downstream of its asset when it fails."""
    from dagster import AssetCheckKey, AssetKey

    from llm_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    key = AssetCheckKey(AssetKey(asset), check)
    return key in graph.asset_check_keys and graph.get_check_spec(key).blocking


def _last_config(instance: Any, run_id: str | None, stage: str) -> dict:
    from llm_pipeline.run_config import from_dagster
    from llm_pipeline.stage_assets import registered_settings

    run = instance.get_run_by_id(run_id) if run_id else None
    config = run.run_config if run is not None else {}
    return from_dagster(config, registered_settings()).get(stage, {})


def model_settings_change(corpus: str, run_config: dict) -> str | None:
    """What the newest model's saved settings and a run now differ in, by the schedule's rule
    (`automation/schedules.settings_change`): this also sees a default an upgrade changed, which
    comparing two run configs (both resolved with today's defaults) cannot."""
    from llm_pipeline.automation.schedules import settings_change as saved_change
    from llm_pipeline.lm.store.checkpoint import CheckpointError, read_config
    from llm_pipeline.lm.store.folders import LATEST, read_pointer, run_dir

    run_id = read_pointer(corpus, LATEST)
    if run_id is None:
        return None
    try:
        saved = read_config(run_dir(corpus, run_id))
        vocab_size = saved.model.get("vocab_size", 0)
        change = saved_change({**saved.model, **saved.training}, run_config, vocab_size)
    except CheckpointError:
        return None  # the stage's own state says what is wrong with it
    except PipelineInputError as exc:
        return f"model {run_id}'s settings are refused by this version ({exc})"
    return f"settings changed since model {run_id}: {change}" if change else None


def plan_run(
    instance: Any,
    corpus: str,
    run_config: dict,
    from_stage: str | None = None,
    force: bool = False,
) -> RunPlan:
    """Which pipeline stages a run of `corpus` with `run_config` redoes, and why."""
    from llm_pipeline.asset_graph import upstream
    from llm_pipeline.cli.overview import code_versions, pipeline_stages, stage_states
    from llm_pipeline.run_config import from_dagster
    from llm_pipeline.stage_assets import ASSETS, registered_settings

    stages = pipeline_stages()
    plan = RunPlan()
    if force:
        plan.run = dict.fromkeys(stages, "--force")
        return plan
    if from_stage is not None:
        if from_stage not in stages:
            raise PipelineInputError(f"unknown stage {from_stage!r}; stages: {', '.join(stages)}")
        start = stages.index(from_stage)
        plan.skip = dict.fromkeys(stages[:start], f"before --from {from_stage}")
        plan.run = dict.fromkeys(stages[start:], f"--from {from_stage}")
        return plan
    wanted = from_dagster(run_config, registered_settings())
    inputs = upstream(ASSETS)
    reasons: dict[str, str | None] = {}
    for state in stage_states(instance, corpus, code_versions()):
        if state.name not in stages:
            continue
        why = state.stale_because
        if why is None:
            before = _last_config(instance, state.run_id, state.name)
            why = settings_change(state.name, before, wanted.get(state.name, {}))
        if why is None and state.name == "trained_model":
            why = model_settings_change(corpus, run_config)
        failed = sorted(n for n, ok in state.checks.items() if not ok and blocking(state.name, n))
        if why is None and failed:
            why = f"check {', '.join(failed)} failed last time"
        if why is None:
            redone = [u for u in inputs.get(state.name, ()) if reasons.get(u)]
            if redone:
                why = f"{', '.join(redone)} will be redone"
        reasons[state.name] = why
    for name in stages:
        if reasons.get(name):
            plan.run[name] = reasons[name] or ""
        else:
            plan.skip[name] = "up to date (code, settings, inputs and checks unchanged)"
    return plan
