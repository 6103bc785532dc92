"""Training state for exact resume: weights, optimizer, schedule position, RNG and data position.

A run writes its state every N steps or M minutes into one folder, swapped in atomically, so a
crash (even `kill -9`) leaves either the previous complete state or the new one. A re-run with
the same model/training config on the same shards finds the folder by a key hashed from exactly
those inputs and carries on; any change to them gives a new key, hence a fresh start.

What makes the resume *exact* (bit-for-bit on CPU in fp32):
- weights from `model.safetensors` and the AdamW moments/step counts from
  `optimizer.safetensors` (tensors; the param groups as JSON in its metadata);
- the step, token count and elapsed seconds in `state.json`, from which the learning-rate
  schedule (warm-up + cosine over progress) is recomputed, and the logged history so far;
- the global torch RNG (dropout), the CUDA RNGs, and the batch sampler's own generator in
  `rng.safetensors` (each a uint8 tensor). Batches are drawn at random positions by that
  generator, so its state *is* the data position. Python's `random` and numpy's RNG are not used
  by the loop.

Nothing here is unpickled: tensors are safetensors, the rest is JSON. A state folder written
before that (`optimizer.pt`, `rng.pt`) still resumes, through the one legacy loader in
checkpoint.py. The folder and its parent `_training_state` are refused when they are symlinks,
so a planted link can neither receive the state nor feed one back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from llm_pipeline.atomic import FILE_MODE, atomic_dir
from llm_pipeline.lm.store.checkpoint import (
    LEGACY_OPTIMIZER_FILE,
    CheckpointError,
    _load_legacy_pickle,
    load_optimizer_state,
    load_weights_file,
    read_safetensors,
    save_optimizer_state,
    save_tensors,
)
from llm_pipeline.safe_open import UnsafeFileError, read_bytes, refuse_symlinked_folder

WEIGHTS_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
LEGACY_RNG_FILE = "rng.pt"
STATE_FILE = "state.json"
STATE_VERSION = 1

# Training settings that do not change what is computed, so changing them keeps the resume key:
# how often to checkpoint or log, whether to resume at all, and the CPU thread count (which can
# change the last bits of a float sum, but not what is trained).
NOT_IN_KEY = frozenset(
    {
        "checkpoint_interval_steps",
        "checkpoint_interval_minutes",
        "resume",
        "log_interval",
        "measure_mfu",
        "num_threads",
    }
)


def shard_fingerprint(shard_dir: Path) -> str:
    """Digest of the shards' `meta.json` (tokenizer hash, split counts) and the split file sizes.

    Timings in `meta.json` (`*_seconds`) are left out: re-encoding the same text with the same
    tokenizer gives the same shards, and a re-run of the whole graph must still resume.
    """
    shard_dir = Path(shard_dir)
    meta = json.loads((shard_dir / "meta.json").read_text())
    stable = {k: v for k, v in meta.items() if not k.endswith("_seconds")}
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True).encode())
    for split in ("train", "val"):
        path = shard_dir / f"{split}.bin"
        digest.update(f"{split}:{path.stat().st_size if path.exists() else -1};".encode())
    return digest.hexdigest()


def resume_key(model: dict, training: dict, shard_dir: Path) -> str:
    """Short hash of everything that decides the computation: model, training config and data."""
    payload = {
        "model": model,
        "training": {k: v for k, v in training.items() if k not in NOT_IN_KEY},
        "data": shard_fingerprint(shard_dir),
        "version": STATE_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TrainingState:
    """A loaded state folder: plain data for the loop to apply to its model and optimizer."""

    path: Path
    optimizer: dict
    rng: dict[str, torch.Tensor]
    state: dict


def capture_rng(batch_generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """Every RNG the loop draws from, as tensors."""
    rng = {"torch_cpu": torch.get_rng_state(), "batch_generator": batch_generator.get_state()}
    if device.type == "cuda":
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda_{i}"] = state
    return rng


def restore_rng(
    rng: dict[str, torch.Tensor], batch_generator: torch.Generator, device: torch.device
) -> None:
    """Put back what `capture_rng` saved."""
    torch.set_rng_state(rng["torch_cpu"])
    batch_generator.set_state(rng["batch_generator"])
    if device.type == "cuda":
        states = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda_"))]
        if states:
            torch.cuda.set_rng_state_all(states)


def save_training_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: dict[str, torch.Tensor],
    state: dict,
) -> Path:
    """Write the whole state folder atomically (the previous one stays until this one is whole)."""
    check_state_folder(path)
    with atomic_dir(Path(path)) as tmp:
        safetensors.torch.save_model(model, str(tmp / WEIGHTS_FILE))
        os.chmod(tmp / WEIGHTS_FILE, FILE_MODE)
        save_optimizer_state(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        save_tensors(rng, tmp / RNG_FILE)
        text = json.dumps({**state, "version": STATE_VERSION}, indent=1, sort_keys=True)
        (tmp / STATE_FILE).write_text(text + "\n")
    return Path(path)


def check_state_folder(path: Path) -> None:
    """Refuse a state folder, or its `_training_state` parent, that is a symlink (or no folder):
    the run would write its weights elsewhere, remove them there, and resume from there."""
    path = Path(path)
    for folder in (path.parent, path):
        try:
            refuse_symlinked_folder(folder)
        except UnsafeFileError as exc:
            raise CheckpointError(f"training state {exc}") from None


def has_training_state(path: Path) -> bool:
    check_state_folder(path)
    return (Path(path) / STATE_FILE).is_file()


def load_training_state(path: Path) -> TrainingState:
    """Read a state folder; a clear `CheckpointError` naming the file if any part is unusable."""
    path = Path(path)
    check_state_folder(path)
    state_file = path / STATE_FILE
    try:
        state = json.loads(read_bytes(state_file))
    except FileNotFoundError:
        raise CheckpointError(f"{state_file}: missing (no training state to resume)") from None
    except UnsafeFileError as exc:
        raise CheckpointError(str(exc)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{state_file}: not valid JSON ({exc})") from None
    if state.get("version") != STATE_VERSION:
        raise CheckpointError(
            f"{state_file}: training state version {state.get('version')!r}, expected "
            f"{STATE_VERSION}; start fresh (resume=False)"
        )
    if not (path / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{path / WEIGHTS_FILE}: missing (incomplete training state)")
    if not (path / OPTIMIZER_FILE).exists() and not (path / LEGACY_OPTIMIZER_FILE).exists():
        raise CheckpointError(f"{path / OPTIMIZER_FILE}: missing (incomplete training state)")
    optimizer = load_optimizer_state(path)  # or a legacy optimizer.pt
    return TrainingState(path, optimizer, _load_rng(path), state)


def _load_rng(path: Path) -> dict[str, torch.Tensor]:
    file, legacy = path / RNG_FILE, path / LEGACY_RNG_FILE
    if not file.exists() and legacy.exists():
        rng = _load_legacy_pickle(legacy)
    elif not file.exists():
        raise CheckpointError(f"{file}: missing (incomplete training state)")
    else:
        rng, _ = read_safetensors(file)
    if not isinstance(rng, dict) or not all(
        isinstance(v, torch.Tensor) and v.dtype == torch.uint8 for v in rng.values()
    ):
        raise CheckpointError(f"{file}: not a set of RNG states (uint8 tensors)")
    if "torch_cpu" not in rng or "batch_generator" not in rng:
        raise CheckpointError(f"{file}: RNG states torch_cpu and batch_generator missing")
    return rng


def load_weights_into(model: nn.Module, source: Path) -> None:
    """Load the state's weights into `model`, refusing a state whose tensors do not match it."""
    load_weights_file(model, Path(source) / WEIGHTS_FILE)


def clear_training_state(path: Path) -> None:
    """Remove a state folder once its run's final checkpoint is safely written (never through
    a symlink: a linked folder is refused, not emptied)."""
    check_state_folder(path)
    shutil.rmtree(Path(path), ignore_errors=True)


def restore_run(
    path: Path,
    resume: bool,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_generator: torch.Generator,
    device: torch.device,
) -> dict | None:
    """Load the state in `path` into a fresh run and return its counters, or None to start fresh.

    With `resume` off the saved state is discarded, so a later run cannot pick it up either.
    """
    if not resume:
        clear_training_state(path)
        return None
    if not has_training_state(path):
        return None
    saved = load_training_state(path)
    load_weights_into(model, path)
    optimizer.load_state_dict(saved.optimizer)
    restore_rng(saved.rng, batch_generator, device)
    return saved.state


def save_run(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_generator: torch.Generator,
    device: torch.device,
    state: dict,
) -> None:
    """Save a run's weights, optimizer, RNG streams and counters to resume it later.

    `saved_at` (wall clock) lets the run that resumes say how much time the crash cost.
    """
    state = {**state, "saved_at": time.time()}
    save_training_state(path, model, optimizer, capture_rng(batch_generator, device), state)


@dataclass(frozen=True)
class ResumePoint:
    """Where a rerun will continue: the saved step, and the wall-clock time since it was saved."""

    step: int
    elapsed_s: float
    seconds_since_saved: float | None


def resume_point(state_root: Path, model: dict, training: dict, shard_dir: Path):
    """The state a run with these inputs would resume from (None: it starts fresh)."""
    if not training.get("resume", True):
        return None
    path = Path(state_root) / resume_key(model, training, shard_dir)
    if not has_training_state(path):  # refuses a symlinked state folder, as loading does
        return None
    try:
        state = json.loads(read_bytes(path / STATE_FILE))
        saved_at = state.get("saved_at")
        since = max(time.time() - float(saved_at), 0.0) if saved_at else None
        return ResumePoint(int(state.get("step", 0)), float(state.get("elapsed_s", 0.0)), since)
    except (OSError, ValueError, TypeError, AttributeError):
        return None  # unreadable: loading it will say why
