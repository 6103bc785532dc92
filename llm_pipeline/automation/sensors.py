"""`new_corpus_sensor`: a new folder under `data/raw/` becomes a corpus partition and gets a run.

The cursor remembers every folder already handled, so each folder is picked up once, however
often the sensor ticks and whether or not its run succeeded (later changes to its files are the
retrain schedule's business). A folder whose name is not a valid corpus name is reported once,
in the tick's log and skip message, and otherwise ignored. A folder that was registered as a
partition some other way (`llm-pipeline corpus add`) is left to whoever registered it.
"""

import json
import os
import time

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from llm_pipeline import paths
from llm_pipeline.automation.jobs import corpus_pipeline_job
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME, corpus_partitions

SETTLE_SECONDS_ENV = "LLM_PIPELINE_NEW_CORPUS_SETTLE_SECONDS"
DEFAULT_SETTLE_SECONDS = 60.0


def settle_seconds() -> float:
    """How long a new folder's files must be left untouched before it counts as complete.

    Copying a large corpus takes a while; starting a run on the first files to arrive would
    train on half of it.
    """
    value = os.environ.get(SETTLE_SECONDS_ENV, "").strip()
    try:
        seconds = float(value) if value else DEFAULT_SETTLE_SECONDS
    except ValueError:
        raise PipelineInputError(f"{SETTLE_SECONDS_ENV}={value!r} is not a number") from None
    if seconds < 0:
        raise PipelineInputError(f"{SETTLE_SECONDS_ENV}={value!r} must not be negative")
    return seconds


def _read_cursor(cursor: str | None) -> set[str]:
    if not cursor:
        return set()
    try:
        seen = json.loads(cursor).get("seen", [])
    except (json.JSONDecodeError, AttributeError):
        return set()  # a hand-edited cursor: start over rather than fail every tick
    return {name for name in seen if isinstance(name, str)}


@sensor(
    name="new_corpus_sensor",
    job=corpus_pipeline_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.STOPPED,
    description="A new folder under data/raw/ (valid corpus name, files settled) becomes a "
    "corpus partition and gets a full-pipeline run; each folder is picked up once.",
)
def new_corpus_sensor(context: SensorEvaluationContext):
    """Register and run each new corpus folder once; report invalid names once."""
    from llm_pipeline.text.read.corpus_files import unusable_reason
    from llm_pipeline.text.read.readers import corpus_files

    raw_root = paths.data_dir() / "raw"
    seen = _read_cursor(context.cursor)
    folders = sorted(p for p in raw_root.iterdir() if p.is_dir()) if raw_root.is_dir() else []
    settle = settle_seconds()
    now = time.time()
    registered = set(context.instance.get_dynamic_partitions(CORPUS_PARTITIONS_NAME))
    new, notes = [], []
    for folder in folders:
        name = folder.name
        if name in seen or name.startswith("."):
            continue
        try:
            paths.validate_corpus_name(name)
        except PipelineInputError as exc:
            context.log.warning(f"{folder}: ignored, {exc}")
            notes.append(f"{folder.name!r} ignored: invalid corpus name")
            seen.add(name)
            continue
        if name in registered:
            context.log.info(f"{name}: already a partition; not launching a run")
            notes.append(f"{name}: already registered")
            seen.add(name)
            continue
        files = corpus_files(folder)
        if not files:
            notes.append(f"{name}: no files yet")
            continue  # not added to the cursor: looked at again on the next tick
        newest = max(f.stat().st_mtime for f in files)
        if now - newest < settle:
            notes.append(f"{name}: files changed in the last {settle:.0f} s, waiting")
            continue
        problem = unusable_reason(folder, files)
        if problem:  # a run could only fail; looked at again when files arrive
            notes.append(f"{name}: not registered, {problem}")
            continue
        context.log.info(f"{name}: new corpus with {len(files)} file(s); registering and running")
        new.append(name)
        seen.add(name)
    cursor = json.dumps({"seen": sorted(seen)})
    if not new:
        reason = "; ".join(notes) if notes else f"no new folders under {raw_root}"
        return SensorResult(skip_reason=SkipReason(reason), cursor=cursor)
    return SensorResult(
        run_requests=[RunRequest(run_key=f"new-corpus:{name}", partition_key=name) for name in new],
        dynamic_partitions_requests=[corpus_partitions.build_add_request(new)],
        cursor=cursor,
    )
