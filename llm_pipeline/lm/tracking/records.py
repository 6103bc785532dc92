"""After training, in MLflow: the report joins the training's run, promotion moves `champion`.

The `evaluation_report` and `exported_model` steps call these (the trainer's side is
lm/tracking/training_runs.py). Each does nothing, and imports no mlflow, when tracking is off.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from llm_pipeline.lm.tracking.training_runs import (
    CHAMPION,
    REPORT_ARTIFACTS,
    RUN_ID_TAG,
    check_reachable,
    client_for,
    experiment_name,
    mlflow_errors,
    register_version,
    registered_model_name,
    tracking_uri,
)
from llm_pipeline.safe_open import is_regular_file, pinned, regular_files


def find_run(client, corpus: str, run_id: str) -> str | None:
    """The MLflow run id of Dagster run `run_id`, or None if it was not tracked."""
    experiment = client.get_experiment_by_name(experiment_name(corpus))
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`{RUN_ID_TAG}` = '{run_id}'", max_results=1
    )
    return runs[0].info.run_id if runs else None


def report_files(checkpoint: Path) -> list[Path]:
    """The evaluation report in a checkpoint folder: `report.md`, `report.html`, the plots."""
    files = [Path(checkpoint) / "report.md", Path(checkpoint) / "report.html"]
    # Judged without following links: a `loss.png -> ~/.ssh/id_rsa` is not a plot.
    plots = [f for f in regular_files(checkpoint) if f.suffix == ".png"]
    return [f for f in files if is_regular_file(f)] + plots


def record_report(
    corpus: str, run_id: str, checkpoint: Path, metrics: dict[str, float], promoted: bool
) -> dict[str, Any]:
    """Add the evaluation report (files and `metrics`) to the training's MLflow run and, on
    promotion, move the alias `champion` to its version. Call before `current` moves: if
    MLflow fails, the step fails and neither moves. Tracking off: nothing, no mlflow import."""
    uri = tracking_uri()
    if uri is None:
        return {}
    with mlflow_errors(uri):
        client = client_for(uri)
        mlflow_run = find_run(client, corpus, run_id)
        if mlflow_run is None:
            if not promoted:
                return {}
            # The new champion was trained with tracking off: no version can carry the alias,
            # and leaving it on the old champion would name a model that is not `current`.
            with contextlib.suppress(Exception):
                client.delete_registered_model_alias(registered_model_name(corpus), CHAMPION)
            return {
                "mlflow_warning": f"run {run_id} has no MLflow run in {experiment_name(corpus)}"
                f" (trained with tracking off?); the alias {CHAMPION!r} was removed"
            }
        with pinned(report_files(checkpoint)) as files:  # a swap after the listing: left out
            for file in files:
                client.log_artifact(mlflow_run, str(file), REPORT_ARTIFACTS)
        for name, value in metrics.items():
            client.log_metric(mlflow_run, name, float(value))
        metadata: dict[str, Any] = {"mlflow_run_id": mlflow_run}
        if promoted:
            version = register_version(client, corpus, run_id, mlflow_run, checkpoint)
            client.set_registered_model_alias(registered_model_name(corpus), CHAMPION, version)
            metadata["mlflow_champion_version"] = int(version)
    return metadata


def record_export(corpus: str, run_id: str, checkpoint: Path, champion: bool) -> dict[str, Any]:
    """Register the run's exported Hugging Face folder as a version of its own, and move
    `champion` to it when the run is the champion (`current`): then
    `models:/llm-pipeline-<corpus>@champion` is a folder transformers and vLLM load."""
    uri = tracking_uri()
    if uri is None:
        return {}
    with mlflow_errors(uri):
        client = client_for(uri)
        mlflow_run = find_run(client, corpus, run_id)
        if mlflow_run is None:
            return {"mlflow_warning": f"run {run_id} has no MLflow run (trained untracked)"}
        version = register_version(client, corpus, run_id, mlflow_run, checkpoint, export=True)
        if champion:
            client.set_registered_model_alias(registered_model_name(corpus), CHAMPION, version)
    return {"mlflow_model_version": int(version)}


ENDED_BY_TAG = "llm_pipeline/ended_by"


def end_unfinished_run(corpus: str, run_id: str, reason: str) -> str | None:
    """Mark the training's MLflow run KILLED if it is still RUNNING: a trainer killed outright
    (SIGKILL, the OOM killer) or whose whole run died cannot end it itself. Called when the
    trainer process exits without finishing and when a dead run is cleared. Never raises
    (tracking must not hide the failure it reports); returns what it did, or None."""
    uri = tracking_uri()
    if uri is None:
        return None
    try:
        check_reachable(uri)  # a store that is down: at most its 10 s check, no client retries
        with mlflow_errors(uri):
            client = client_for(uri)
            mlflow_run = find_run(client, corpus, run_id)
            if mlflow_run is None or client.get_run(mlflow_run).info.status != "RUNNING":
                return None
            client.set_tag(mlflow_run, ENDED_BY_TAG, reason[:500])
            client.set_terminated(mlflow_run, "KILLED")
    except Exception as exc:  # never hide the failure the caller is reporting
        return f"MLflow run of {run_id} could not be ended: {exc}"
    return f"MLflow run {mlflow_run} of {run_id} marked KILLED"
