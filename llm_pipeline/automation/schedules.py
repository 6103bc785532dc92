"""`retrain_schedule`: retrain every corpus whose raw data or training config changed.

Each tick compares, per registered corpus, what the champion (`current`, the promoted model) was
trained on (its checkpoint `config.json`: the raw files' fingerprint and the model/training
settings) with what a run would use now. Only corpora that differ get a run; every other corpus
is listed with the reason it was skipped, in the tick's log and, when nothing runs, in the tick's
skip message — both visible on the schedule's page in the UI.

- A corpus with no usable file (none of a supported type, or none readable) is skipped, saying
  so: a run could only fail on it.
- The champion is the reference: it is the model in use, and "is it out of date" is the question.
  When a newer model already tried today's data and settings and lost (or failed its checks),
  training the same again would repeat it, so the corpus is skipped, naming that model.
- Machine settings (`lm/settings.py` NOT_COMPARED: threads, device, compile, measure_mfu, how
  often to log or save) change how a run goes, not what it trains, and never trigger one.
"""

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dagster import (
    DagsterRunStatus,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from llm_pipeline import paths
from llm_pipeline.asset_graph import stage_settings
from llm_pipeline.automation.dead_runs import clear_dead_runs
from llm_pipeline.automation.jobs import corpus_pipeline_job
from llm_pipeline.dagster_compat import is_valid_cron_string
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline.settings_base import Stage

RETRAIN_CRON_ENV = "LLM_PIPELINE_RETRAIN_CRON"
RETRAIN_CONFIG_ENV = "LLM_PIPELINE_RETRAIN_CONFIG"
RETRAIN_TIMEZONE_ENV = "LLM_PIPELINE_RETRAIN_TIMEZONE"
DEFAULT_RETRAIN_CRON = "0 3 * * 0"  # Sundays at 03:00
REASON_TAG = "llm_pipeline/retrain_reason"
ACTIVE_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


class InvalidScheduleSetting(PipelineInputError):
    """A schedule setting from the environment that cannot be used."""


def retrain_cron() -> str:
    """The retraining cron string from `LLM_PIPELINE_RETRAIN_CRON`, checked before Dagster sees it.

    Checked here so a typo reads as one line naming the variable, instead of Dagster's definition
    error deep inside the code location's load traceback.
    """
    cron = os.environ.get(RETRAIN_CRON_ENV, "").strip() or DEFAULT_RETRAIN_CRON
    if not is_valid_cron_string(cron):
        raise InvalidScheduleSetting(
            f"{RETRAIN_CRON_ENV}={cron!r} is not a valid cron string; expected five fields "
            "'minute hour day-of-month month day-of-week', e.g. '0 3 * * 0' (Sundays 03:00)"
        )
    return cron


@dataclass(frozen=True)
class RetrainDecision:
    """Whether one corpus needs a run, and why (shown in the UI either way)."""

    corpus: str
    retrain: bool
    reason: str


def _compared(settings: object) -> dict:
    """The settings a checkpoint records (its `model` and `training` blocks), less the
    vocabulary (the tokenizer's, not the training config's) and the machine settings."""
    from llm_pipeline.lm.settings import NOT_COMPARED, ModelConfig, TrainConfig

    values = {**ModelConfig.fields_of(settings), **TrainConfig.fields_of(settings)}
    values.pop("vocab_size")
    return {k: v for k, v in values.items() if k not in NOT_COMPARED}


def settings_change(saved: dict, run_config: dict, vocab_size: int) -> str | None:
    """What differs between the settings a model was trained with (its checkpoint's `model` and
    `training`, merged) and those a run would use now, or None.

    Both sides are validated `TrainedModelSettings`: a key the saved config lacks (it predates
    the key) takes the value that model had — `LEGACY_DEFAULTS` where the key's default changed
    behaviour, else today's default, which by the rule for new keys keeps old behaviour — so an
    upgrade that adds a key retrains nothing. A key the run does not set whose saved value
    differs from today's default is named as a changed default: an upgrade that changes a
    default retrains, and says why. A saved key this version no longer knows is not compared."""
    from llm_pipeline.lm.settings import LEGACY_DEFAULTS, TRAINED_MODEL, TrainedModelSettings

    values = run_config.get("ops", {}).get("trained_model", {}).get("config", {})
    upstream = {"vocab_size": vocab_size}
    now = _compared(TRAINED_MODEL.settings(values, upstream))
    known = {k: v for k, v in saved.items() if k in TrainedModelSettings.model_fields}
    missing = {k: v for k, v in LEGACY_DEFAULTS.items() if k not in known}
    before = _compared(TrainedModelSettings.from_dict({**missing, **known, **upstream}))
    changed = sorted(key for key, value in now.items() if before[key] != value)
    if not changed:
        return None
    preset = bool(values.get("preset"))

    def shown(key: str) -> str:
        return f"{key} ({before[key]!r} → {now[key]!r})"

    set_now = [shown(k) for k in changed if k in values or preset]
    defaults_now = [shown(k) for k in changed if k not in values and not preset]
    parts = [", ".join(set_now)] if set_now else []
    if defaults_now:
        parts.append("a default changed: " + ", ".join(defaults_now))
    return "; ".join(parts)


def usable_files_problem(folder: Path) -> str | None:
    """Why a corpus folder has nothing a run could read, or None when it has a usable file."""
    from llm_pipeline.text.read.corpus_files import corpus_files, unusable_reason

    if not folder.is_dir():
        return f"no raw folder {folder}"
    return unusable_reason(folder, corpus_files(folder))


def _change_since(corpus: str, run_id: str, run_config: dict, fingerprint: str, models_root):
    """What differs between model `run_id` and a run now (an unreadable model, or one whose
    settings this version refuses, says so: both retrain), or None."""
    from llm_pipeline.lm.store.checkpoint import CheckpointError, read_config
    from llm_pipeline.lm.store.folders import run_dir

    try:
        saved = read_config(run_dir(corpus, run_id, models_root))
    except CheckpointError as exc:
        return f"model {run_id} unreadable ({exc})"
    if (saved.data.raw_fingerprint if saved.data else None) != fingerprint:
        return f"raw data changed since model {run_id}"
    try:
        change = settings_change(
            {**saved.model, **saved.training}, run_config, saved.model.get("vocab_size", 0)
        )
    except PipelineInputError as exc:  # e.g. a size above today's bounds: this corpus only
        return f"model {run_id}'s settings are refused by this version ({exc})"
    return f"training config changed since model {run_id}: {change}" if change else None


def retrain_decision(corpus: str, run_config: dict, data_root: Path, models_root: Path):
    """Compare a corpus's champion with its raw files and the settings a run would use now."""
    from llm_pipeline.lm.store.folders import CURRENT, LATEST, read_pointer
    from llm_pipeline.text.read.readers import corpus_files, fingerprint_files

    try:
        folder = paths.raw_dir(corpus, data_root)
    except PipelineInputError:
        return RetrainDecision(corpus, False, "invalid corpus name (delete this partition)")
    problem = usable_files_problem(folder)
    if problem:
        return RetrainDecision(corpus, False, f"nothing to train on: {problem}")
    # The same fingerprint raw_corpus records, so "changed" means exactly what makes it stale.
    fingerprint = fingerprint_files(folder, corpus_files(folder))
    champion, latest = (
        read_pointer(corpus, CURRENT, models_root),
        read_pointer(corpus, LATEST, models_root),
    )
    if champion is not None:
        change = _change_since(corpus, champion, run_config, fingerprint, models_root)
        if change is None:
            return RetrainDecision(corpus, False, f"unchanged since champion {champion}")
    else:
        change = "no champion yet"
    tried = latest is not None and latest != champion
    if tried and _change_since(corpus, latest, run_config, fingerprint, models_root) is None:
        return RetrainDecision(
            corpus,
            False,
            f"{change}, but model {latest} was already trained on this data and these "
            "settings and not promoted; change the data or settings to retrain",
        )
    if champion is None and latest is None:
        change = "no trained model yet"
    return RetrainDecision(corpus, True, change)


def retrain_run_config(stages: Mapping[str, Stage]) -> dict:
    """Run config for scheduled runs: the YAML file in `LLM_PIPELINE_RETRAIN_CONFIG`, if set,
    checked against `stages` (each stage's settings, from the repository's asset graph).

    Same format as `llm-pipeline run --config`; read on every tick, so an edit takes effect on
    the next one, and a broken file fails the tick with the file's name and reason instead of
    queueing runs that would fail at launch.
    """
    path = os.environ.get(RETRAIN_CONFIG_ENV, "").strip()
    if not path:
        return {}
    from llm_pipeline.run_config import load_run_config

    try:
        return load_run_config(path, stages)
    except PipelineInputError as exc:
        raise InvalidScheduleSetting(str(exc)) from None


def _active_corpora(context: ScheduleEvaluationContext) -> set[str]:
    """Corpora with a *live* pipeline run: dead runs (worker gone) are cleared first."""
    clear_dead_runs(context.instance, log=context.log.warning)
    runs = context.instance.get_runs(
        RunsFilter(job_name=corpus_pipeline_job.name, statuses=ACTIVE_STATUSES)
    )
    return {run.tags.get("dagster/partition") for run in runs}


@schedule(
    name="retrain_schedule",
    cron_schedule=retrain_cron(),
    execution_timezone=os.environ.get(RETRAIN_TIMEZONE_ENV) or "UTC",
    job=corpus_pipeline_job,
    default_status=DefaultScheduleStatus.STOPPED,
    description="Retrain every corpus whose raw data or training config changed since its newest "
    f"model (cron from {RETRAIN_CRON_ENV}, default '{DEFAULT_RETRAIN_CRON}'; run config from the "
    f"YAML file in {RETRAIN_CONFIG_ENV}).",
)
def retrain_schedule(context: ScheduleEvaluationContext):
    """One run per changed corpus; a skip reason per unchanged one."""
    assets = list(context.repository_def.assets_defs_by_key.values())
    run_config = retrain_run_config(stage_settings(assets))
    data_root, models_root = paths.data_dir(), paths.models_dir()
    active = _active_corpora(context)
    corpora = sorted(context.instance.get_dynamic_partitions(CORPUS_PARTITIONS_NAME))
    requests, skipped = [], []
    config_hash = hashlib.sha256(json.dumps(run_config, sort_keys=True).encode()).hexdigest()
    tick = context.scheduled_execution_time
    tick_id = tick.isoformat() if tick is not None else "manual"
    for corpus in corpora:
        if corpus in active:
            decision = RetrainDecision(corpus, False, "a pipeline run is already queued or running")
        else:
            decision = retrain_decision(corpus, run_config, data_root, models_root)
        if decision.retrain:
            context.log.info(f"{corpus}: retrain — {decision.reason}")
            requests.append(
                RunRequest(
                    # One run per corpus per tick: a failed run is retried on the next tick.
                    run_key=f"{corpus}:{tick_id}:{config_hash[:12]}",
                    partition_key=corpus,
                    run_config=run_config,
                    tags={REASON_TAG: decision.reason[:200]},
                )
            )
        else:
            context.log.info(f"{corpus}: skipped — {decision.reason}")
            skipped.append(f"{corpus}: {decision.reason}")
    if requests:
        return requests
    if not corpora:
        return SkipReason("no corpora registered")
    return SkipReason("nothing to retrain; " + "; ".join(skipped))
