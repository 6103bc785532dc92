"""Checks of a run's config against this machine and its files, before the first stage runs.

`run_config.check_stages` checks values against the stages' rules; what it cannot know is
whether an `eval_files` entry exists under the data root, whether `device: cuda` has a GPU
here, or whether a tracking server answers. Those are checked here, by `check_machine`, from the
same entry points (CLI `run` / `materialize` / `backfill`, the schedule, the first line of every
asset), so a bad run is refused in seconds instead of after the data stages and the training.

`MACHINE_CHECKS` is the hook: each check takes the checked `{stage: {key: value}}` and a
`Preflight` (where the data lives, what the message should start with) and raises
`PreflightError` with the fix in the message. Another integration (MLflow, a cluster) adds its
own check to the list with `machine_check`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llm_pipeline import paths
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.safe_open import UnsafeFileError, open_binary


class PreflightError(PipelineInputError):
    """The run cannot work on this machine; the message names the setting and the fix."""


@dataclass(frozen=True)
class Preflight:
    """What the checks need besides the values: the data root and the message's prefix."""

    source: str
    data_root: Path

    def fail(self, where: str, problem: str) -> PreflightError:
        return PreflightError(f"{self.source}: {where}: {problem}")


MachineCheck = Callable[[dict, Preflight], None]
MACHINE_CHECKS: list[MachineCheck] = []


def machine_check(check: MachineCheck) -> MachineCheck:
    """Register `check` to run on every run's config (a decorator)."""
    MACHINE_CHECKS.append(check)
    return check


@machine_check
def check_eval_files(values: dict, preflight: Preflight) -> None:
    """Every `evaluation_report.eval_files` entry is a regular file inside the data root."""
    root = preflight.data_root
    for name in (values.get("evaluation_report") or {}).get("eval_files") or []:
        where = f"evaluation_report.eval_files {name!r}"
        try:
            file = paths.within_root(root, name)
        except PipelineInputError as exc:
            raise preflight.fail(
                where, f"{exc}; copy the file under {root} and give its path relative to it"
            ) from None
        if not file.exists():
            raise preflight.fail(
                where, f"{file} does not exist; put the file there (paths are relative to {root})"
            )
        if not file.is_file():
            raise preflight.fail(where, f"{file} is not a regular file; give a text file")
        try:  # the report opens it this way: refused here, before training, not after it
            with open_binary(file, root):
                pass
        except UnsafeFileError as exc:
            raise preflight.fail(
                where, f"{file}: {exc.reason}; copy the file itself under {root}"
            ) from None


@machine_check
def check_device(values: dict, preflight: Preflight) -> None:
    """`trained_model.device: cuda` (or `mps`) needs that device on this machine."""
    device = str((values.get("trained_model") or {}).get("device") or "auto")
    if device in ("auto", "cpu"):
        return
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise preflight.fail(
            "trained_model.device", f"{device!r} but no CUDA device here; use auto or cpu"
        )
    index = device[5:]
    if device.startswith("cuda:") and index.isdigit() and int(index) >= torch.cuda.device_count():
        raise preflight.fail(
            "trained_model.device",
            f"{device!r} but only {torch.cuda.device_count()} CUDA device(s) here",
        )
    mps = getattr(torch.backends, "mps", None)
    if device == "mps" and not (mps and mps.is_available()):
        raise preflight.fail("trained_model.device", "'mps' but no Apple GPU here; use auto")


@machine_check
def check_tracking_server(values: dict, preflight: Preflight) -> None:
    """With `MLFLOW_TRACKING_URI` set, the tracking store answers (lm/tracking/training_runs.py
    decides how: sqlite opens, an http(s) server answers /health, a file store's folder exists)."""
    from llm_pipeline.lm.tracking.training_runs import (
        TRACKING_URI_ENV,
        TrackingError,
        check_reachable,
    )

    uri = os.environ.get(TRACKING_URI_ENV, "").strip()
    if not uri:
        return
    try:
        check_reachable(uri)
    except TrackingError as exc:
        raise preflight.fail(TRACKING_URI_ENV, f"{uri} does not answer: {exc}") from None


def check_machine(values: dict, source: str, data_root: Path | None = None) -> None:
    """Run every machine check on checked `{stage: {key: value}}` values (see module doc)."""
    preflight = Preflight(source, Path(data_root) if data_root else paths.data_dir())
    for check in MACHINE_CHECKS:
        check(values, preflight)
