"""Checkpoints: `model.safetensors`, `config.json`, `tokenizer.json`, metrics and optimizer state.

Weights go through safetensors and the optimizer state through `torch.load(weights_only=True)`:
nothing a user could have swapped into a model folder is ever unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from llm_pipeline.atomic import FILE_MODE, atomic_dir
from llm_pipeline.contracts import read_json_object
from llm_pipeline.lm.checkpoint_config import CheckpointConfig, CheckpointError
from llm_pipeline.lm.model import build_model

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
METRICS_FILE = "metrics.jsonl"
OPTIMIZER_FILE = "optimizer.pt"

__all__ = ["CheckpointConfig", "CheckpointError", "load_model", "read_config", "read_metrics"]


def save_checkpoint(
    out_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: CheckpointConfig | dict,
    history: list[dict],
    tokenizer_path: Path,
) -> Path:
    """Write a complete checkpoint folder atomically (all files or none).

    A plain dict `config` is read as a `CheckpointConfig` first, so what is written is always
    the current format.
    """
    if isinstance(config, dict):
        config = CheckpointConfig.from_dict(config, Path(out_dir) / CONFIG_FILE)
    with atomic_dir(out_dir, remove_lock=True) as tmp:  # one lock file per run: do not keep it
        safetensors.torch.save_model(model, str(tmp / WEIGHTS_FILE))
        os.chmod(tmp / WEIGHTS_FILE, FILE_MODE)  # safetensors creates it private (0600)
        (tmp / CONFIG_FILE).write_text(
            json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
        )
        shutil.copyfile(tokenizer_path, tmp / TOKENIZER_FILE)
        with open(tmp / METRICS_FILE, "w") as fh:
            for row in history:
                fh.write(json.dumps(row) + "\n")
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    return out_dir


def read_config(path: Path) -> CheckpointConfig:
    """The checkpoint's `config.json`, typed, with a clear error when it is missing, malformed
    or from a newer version of the pipeline."""
    file = Path(path) / CONFIG_FILE
    if not Path(path).is_dir():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    data = read_json_object(file, "incomplete checkpoint", CheckpointError)
    return CheckpointConfig.from_dict(data, file)


def load_model(path: Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model from `config.json` and load `model.safetensors`; ready to generate."""
    path = Path(path)
    config = read_config(path)
    try:
        model_config = config.model_config()
        model = build_model(model_config)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: invalid model settings ({exc})") from None
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing (incomplete checkpoint)")
    load_weights_file(model, weights)
    return model.to(device).eval()


def load_weights_file(model: nn.Module, weights: Path) -> None:
    """Load a safetensors file into `model`, every tensor matching by name and shape.

    The one way weights enter a model (checkpoints and resumable training states alike): only
    safetensors, so a swapped-in file can hold tensors but never code.
    """
    try:
        missing, unexpected = safetensors.torch.load_model(model, str(weights), strict=False)
    except (safetensors.SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{weights}: corrupt or incompatible weights ({exc})") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: weights do not match the model "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
        )


def load_optimizer_state(path: Path) -> dict:
    """The optimizer's `state_dict`, loaded without unpickling arbitrary objects."""
    file = Path(path) / OPTIMIZER_FILE
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing") from None
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"{file}: cannot be loaded safely ({exc})") from None


def read_metrics(path: Path) -> list[dict]:
    """The metrics log, one row per logged step."""
    file = Path(path) / METRICS_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing")
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
