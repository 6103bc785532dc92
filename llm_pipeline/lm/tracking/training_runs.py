"""Experiment tracking and the model registry in MLflow, on only when `MLFLOW_TRACKING_URI` is set.

Every trained model becomes an MLflow run in the experiment `llm-pipeline/<corpus>` (named
after the Dagster run id and tagged with it) and a version of the registered model
`llm-pipeline-<corpus>`; promotion moves the alias `champion`, so the registry and
`models/<corpus>/current` name the same run. The figures themselves stay where they are
(checkpoint, report, Dagster metadata): MLflow is a second, side-by-side view of them.

`mlflow` is imported inside the functions that need it and only when tracking is on, so a
pipeline without `MLFLOW_TRACKING_URI` never loads it (a test checks `sys.modules`).
The reachability check imports nothing either: it runs first in every step of a training run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from llm_pipeline import __version__
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.safe_open import (
    UnsafeFileError,
    is_regular_file,
    pinned,
    refuse_links_below,
    regular_files,
)

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"  # MLflow's own variable
# Where experiments created here keep their artifacts; by default, next to a sqlite store.
ARTIFACT_ROOT_ENV = "LLM_PIPELINE_MLFLOW_ARTIFACTS"
RUN_ID_TAG = "llm_pipeline/run_id"
CORPUS_TAG = "llm_pipeline/corpus"
FINGERPRINT_TAG = "llm_pipeline/raw_fingerprint"
CODE_VERSION_TAG = "llm_pipeline/code_version"
CHAMPION = "champion"
FORMAT_TAG = "format"  # of a model version: checkpoint (this package's folder) or hf
MODEL_ARTIFACTS = "model"  # the registered folder inside the run: weights, config, tokenizer
REPORT_ARTIFACTS = "report"
# What a registered version holds of a checkpoint folder: never the optimizer state.
MODEL_FILES = ("model.safetensors", "config.json", "tokenizer.json", "metrics.jsonl")
HF_EXPORT = Path("export") / "hf"
CHECK_TIMEOUT_S = 10.0


class TrackingError(PipelineInputError):
    """The tracking store cannot be reached or refused a request."""


def tracking_uri() -> str | None:
    """The tracking store when tracking is on, else None."""
    return os.environ.get(TRACKING_URI_ENV, "").strip() or None


def experiment_name(corpus: str) -> str:
    return f"llm-pipeline/{corpus}"


def registered_model_name(corpus: str) -> str:
    return f"llm-pipeline-{corpus}"


def _unreachable(uri: str, reason: object) -> TrackingError:
    return TrackingError(
        f"MLflow tracking store {uri} ({TRACKING_URI_ENV}) cannot be reached: {reason}; "
        f"start it, or unset {TRACKING_URI_ENV} to train without tracking"
    )


def check_reachable(uri: str | None = None) -> None:
    """Refuse a tracking store that cannot be reached, cheaply and without importing mlflow.

    sqlite: the database opens; http(s): the server answers `/health` within 10 s (or asks
    for credentials); a file store: its folder exists. Other schemes (databricks, …): MLflow.
    """
    uri = uri or tracking_uri()
    if uri is None:
        return
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = _sqlite_path(uri)
        if path is not None and not path.parent.is_dir():
            raise _unreachable(uri, f"no folder {path.parent}")
        try:
            sqlite3.connect(str(path) if path is not None else ":memory:").close()
        except sqlite3.Error as exc:
            raise _unreachable(uri, f"{exc} ({path})") from None
    elif parsed.scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=CHECK_TIMEOUT_S):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code not in (401, 403):  # asking for credentials: it is there
                raise _unreachable(uri, f"/health answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise _unreachable(uri, getattr(exc, "reason", exc)) from None
    elif parsed.scheme in ("", "file"):
        folder = Path(unquote(parsed.path) or uri)
        if not folder.is_dir():
            raise _unreachable(uri, f"no folder {folder}")
    else:
        with mlflow_errors(uri):
            client_for(uri).search_experiments(max_results=1)


def _sqlite_path(uri: str) -> Path | None:
    """The database file of `sqlite:///relative.db` or `sqlite:////absolute.db` (SQLAlchemy's
    spelling), or None for an in-memory store."""
    path = (
        unquote(uri[len("sqlite:///") :].split("?", 1)[0]) if uri.startswith("sqlite:///") else ""
    )
    return Path(path).resolve() if path and path != ":memory:" else None


def code_version() -> str:
    """The package version, and the git commit when running from a checkout."""
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            sha = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()  # fmt: skip
            if sha:
                return f"{__version__}+{sha}"
    return __version__


def job_tracking(cleaning_profile: str | None) -> dict[str, Any] | None:
    """What the `trained_model` asset puts in the trainer's job (`TrainerJob.tracking`):
    None when tracking is off, else the store and the run's extra params and tags."""
    uri = tracking_uri()
    if uri is None:
        return None
    return {
        "uri": uri,
        "params": {"cleaning_profile": cleaning_profile or ""},
        "tags": {CODE_VERSION_TAG: code_version()},
    }


@contextlib.contextmanager
def mlflow_errors(uri: str) -> Iterator[None]:
    """MLflow's errors (and a dead server's) as one TrackingError naming the store."""
    try:
        yield
    except TrackingError:
        raise
    except Exception as exc:  # MlflowException, requests' and SQLAlchemy's errors
        raise _unreachable(uri, f"{type(exc).__name__}: {exc}") from None


def client_for(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _artifact_root(uri: str) -> str | None:
    """Artifacts of a new experiment: the variable, else `artifacts/` next to a sqlite file
    (MLflow's own default is `./mlruns` under whatever folder the step runs in)."""
    explicit = os.environ.get(ARTIFACT_ROOT_ENV, "").strip()
    if explicit:
        return Path(explicit).resolve().as_uri() if "://" not in explicit else explicit
    path = _sqlite_path(uri) if uri.startswith("sqlite:") else None
    return (path.parent / "artifacts").as_uri() if path is not None else None


def _experiment_id(client, uri: str, corpus: str) -> str:
    name = experiment_name(corpus)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = _artifact_root(uri)
    try:
        return client.create_experiment(
            name, artifact_location=f"{root}/{corpus}" if root else None
        )
    except Exception:  # another run created it meanwhile
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _metrics_of(row: dict) -> dict[str, float]:
    names = {"train_loss": "train_loss", "val_loss": "val_loss", "lr": "lr",
             "tokens_per_s": "tokens_per_second"}  # fmt: skip
    return {names[k]: float(row[k]) for k in names if row.get(k) is not None}


class NullTracker:
    """Tracking off (or a rank other than 0): every call does nothing."""

    def log_row(self, row: dict) -> None:
        pass

    def finish(self, summary: Any, checkpoint: Path, history: list[dict]) -> dict[str, Any]:
        return {}


class RunTracker:
    """One MLflow run of one training: params at the start, a point per logged step, the final
    figures, artifacts and a registered model version at the end.

    A logging call that fails mid-training only warns (the training matters more than its
    view); the steps it missed are logged at the end from the history. If the process dies
    before `finish`, the run is marked FAILED on exit, never left RUNNING with half a log.
    """

    def __init__(self, client, uri: str, run_id: str, corpus: str, log: Callable[[str], None]):
        self.client, self.uri, self.run_id, self.corpus, self.log = client, uri, run_id, corpus, log
        self.logged_steps: set[int] = set()
        self.warned = False
        self.open = True
        atexit.register(self._end_if_open)

    def log_row(self, row: dict) -> None:
        """One logged step, live; a failure warns once and the step is retried at the end."""
        try:
            self._send(row)
        except Exception as exc:
            if not self.warned:
                self.log(f"warning: MLflow logging failed ({exc}); retrying when training ends")
                self.warned = True

    def _send(self, row: dict) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, int(row["step"])) for k, v in _metrics_of(row).items()]
        self.client.log_batch(self.run_id, metrics=metrics)
        self.logged_steps.add(int(row["step"]))

    def finish(self, summary: Any, checkpoint: Path, history: list[dict]) -> dict[str, Any]:
        """Log what is left, register the model; returns the metadata naming the run and version.

        A failure here warns and is recorded in the metadata: the checkpoint is already safe.
        """
        try:
            with mlflow_errors(self.uri):
                version = self._finish(summary, Path(checkpoint), history)
        except TrackingError as exc:
            self.log(f"warning: {exc}; the checkpoint is saved, MLflow run {self.run_id} is not")
            return {"mlflow_run_id": self.run_id, "mlflow_error": str(exc)}
        return {"mlflow_run_id": self.run_id, "mlflow_model_version": int(version)}

    def _finish(self, summary: Any, checkpoint: Path, history: list[dict]) -> str:
        for row in history:
            if int(row["step"]) not in self.logged_steps:
                self._send(row)
        final = {
            "bits_per_byte": summary.val_bits_per_byte,
            "unigram_bits_per_byte": summary.unigram_bits_per_byte,
            "final_val_loss": summary.val_loss,
            "parameters": summary.parameters,
            "tokens_seen": summary.tokens_seen,
            "training_seconds": summary.training_seconds,
            "mfu": summary.mfu,
        }
        for name, value in final.items():
            if value is not None:
                self.client.log_metric(self.run_id, name, float(value), step=summary.steps)
        self.client.set_tag(self.run_id, "llm_pipeline/stop_reason", summary.stop_reason)
        names = ("config.json", "tokenizer.json", "metrics.jsonl")
        with pinned(checkpoint / name for name in names) as files:  # no link is followed
            for file in files:
                self.client.log_artifact(self.run_id, str(file))
        version = register_version(
            self.client, self.corpus, summary.run_id, self.run_id, checkpoint
        )
        self.client.set_terminated(self.run_id, "FINISHED")
        self.open = False
        return version

    def _end_if_open(self) -> None:
        if self.open:
            self.open = False
            with contextlib.suppress(Exception):
                self.client.set_terminated(self.run_id, "FAILED")


Tracker = NullTracker | RunTracker


def start_tracking(job: Any, log: Callable[[str], None]) -> Tracker:
    """Open the MLflow run of a training job, before any training: an unreachable store fails
    here, not after hours of GPU time. `job` is a `TrainerJob`; no tracking block: no-op."""
    settings = getattr(job, "tracking", None)
    if not settings:
        return NullTracker()
    uri = settings["uri"]
    params = {**job.settings.to_dict(), **settings.get("params", {})}
    tags = {
        RUN_ID_TAG: job.run_id,
        CORPUS_TAG: job.corpus,
        FINGERPRINT_TAG: job.data.raw_fingerprint or "",
        **settings.get("tags", {}),
    }
    with mlflow_errors(uri):
        from mlflow.entities import Param, RunTag

        client = client_for(uri)
        run = client.create_run(
            _experiment_id(client, uri, job.corpus), run_name=job.run_id, tags=tags
        )
        items = [Param(k, str(v)) for k, v in sorted(params.items())]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run.info.run_id, params=items[start : start + 100])
        client.log_batch(run.info.run_id, tags=[RunTag("mlflow.source.type", "JOB")])
    log(f"MLflow run {run.info.run_id} in experiment {experiment_name(job.corpus)} at {uri}")
    return RunTracker(client, uri, run.info.run_id, job.corpus, log)


def model_folder(checkpoint: Path) -> Path:
    """What a version registers: the exported Hugging Face folder when there is one."""
    hf = Path(checkpoint) / HF_EXPORT
    try:
        refuse_links_below(hf, checkpoint)  # `export -> elsewhere` is not the run's export
    except UnsafeFileError:
        return Path(checkpoint)
    return hf if is_regular_file(hf / "config.json") else Path(checkpoint)


def register_version(
    client, corpus: str, run_id: str, mlflow_run_id: str, checkpoint: Path, export: bool = False
) -> str:
    """The newest registered version of Dagster run `run_id`, created if there is none: the
    model folder (never the optimizer state) becomes the run's `model/` artifacts (`hf/` for
    the Hugging Face export). `export`: the run's export version, its files logged afresh."""
    name = registered_model_name(corpus)
    found = client.search_model_versions(f"name = '{name}' and tags.`{RUN_ID_TAG}` = '{run_id}'")
    found = sorted(found, key=lambda v: int(v.version))
    if export:
        found = [v for v in found if v.tags.get(FORMAT_TAG) == "hf"]
    elif found:
        return found[-1].version
    checkpoint = Path(checkpoint)
    folder = checkpoint / HF_EXPORT if export else model_folder(checkpoint)
    kind, artifacts = ("checkpoint", MODEL_ARTIFACTS) if folder == checkpoint else ("hf", "hf")
    refuse_links_below(folder, checkpoint)  # the export folder must be the run's own
    # Regular files only, judged and read without following a link (a planted
    # `model.safetensors -> ~/.ssh/id_rsa` would otherwise ship the key to the store).
    selected = [f for f in regular_files(folder) if kind == "hf" or f.name in MODEL_FILES]
    with pinned(selected) as files:
        for file in files:
            client.log_artifact(mlflow_run_id, str(file), artifacts)
    if found:
        return found[-1].version
    with contextlib.suppress(Exception):  # exists already (another run created it)
        client.create_registered_model(name)
    version = client.create_model_version(
        name,
        f"runs:/{mlflow_run_id}/{artifacts}",
        run_id=mlflow_run_id,
        tags={RUN_ID_TAG: run_id, FORMAT_TAG: kind},
    )
    return version.version
