"""Checkpoints: `model.safetensors`, `config.json`, `tokenizer.json`, metrics and optimizer state.

Weights and the optimizer state are safetensors (the optimizer's tensors, with its param groups
as JSON in the file's metadata): nothing a user could have swapped into a model folder is ever
unpickled. Folders written before that kept `optimizer.pt`; it still loads, through the one
legacy function `_load_legacy_pickle` (`torch.load(weights_only=True)`, torch ≥ 2.6).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from llm_pipeline.atomic import FILE_MODE, atomic_dir
from llm_pipeline.contracts import read_json_object
from llm_pipeline.lm.model.networks import build_model
from llm_pipeline.lm.store.checkpoint_config import CheckpointConfig, CheckpointError
from llm_pipeline.lm.store.weights_header import MAX_HEADER_BYTES, check_weights_header
from llm_pipeline.safe_open import UnsafeFileError, copy_file, read_bytes
from llm_pipeline.tokens.bpe import TOKENIZER_FILE

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
OPTIMIZER_FILE = "optimizer.safetensors"
LEGACY_OPTIMIZER_FILE = "optimizer.pt"
_OPTIMIZER_FORMAT = "llm-pipeline-optimizer-1"

__all__ = [
    "CheckpointConfig",
    "CheckpointError",
    "load_model",
    "read_config",
    "read_metrics",
    "read_tokenizer_json",
]


def save_checkpoint(
    out_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: CheckpointConfig | dict,
    history: list[dict],
    tokenizer_path: Path,
    extra_files: dict[str, Path] | None = None,
) -> Path:
    """Write a complete checkpoint folder atomically (all files or none).

    A plain dict `config` is read as a `CheckpointConfig` first, so what is written is always
    the current format. `extra_files` (name: source) are copied in with the rest (the
    validation set's keys, text/split/validation_keys.py).
    """
    if isinstance(config, dict):
        config = CheckpointConfig.from_dict(config, Path(out_dir) / CONFIG_FILE)
    with atomic_dir(out_dir, remove_lock=True) as tmp:  # one lock file per run: do not keep it
        safetensors.torch.save_model(model, str(tmp / WEIGHTS_FILE))
        os.chmod(tmp / WEIGHTS_FILE, FILE_MODE)  # safetensors creates it private (0600)
        (tmp / CONFIG_FILE).write_text(
            json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
        )
        # Read without following links: a planted `tokenizer.json -> secret` is refused.
        copy_file(tokenizer_path, tmp / TOKENIZER_FILE)
        for name, source in (extra_files or {}).items():
            copy_file(source, tmp / name)
        with open(tmp / METRICS_FILE, "w") as fh:
            for row in history:
                fh.write(json.dumps(row) + "\n")
        save_optimizer_state(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
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
    """Rebuild the model from `config.json` and load `model.safetensors`; ready to generate.

    Nothing is allocated before the sizes in `config.json` (bounded by `ModelConfig`) agree with
    the weights file's header (`check_weights_header`): a planted `vocab_size: 1e12` is refused
    by name instead of allocating, or failing to allocate, the model it describes.
    """
    path = Path(path)
    config = read_config(path)
    try:
        model_config = config.model_config()
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: invalid model settings ({exc})") from None
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing (incomplete checkpoint)")
    check_weights_header(model_config, weights, path / CONFIG_FILE)
    model = build_model(model_config)
    load_weights_file(model, weights)
    return model.to(device).eval()


def read_tokenizer_json(path: Path, config: CheckpointConfig | None = None) -> str:
    """The checkpoint's `tokenizer.json`, read through one no-follow descriptor and checked
    against the sha256 its `config.json` records, so a tokenizer planted next to the weights
    (one that decodes ids to terminal escapes, or to other words) is refused before use.

    A config that records no hash (written before hashes were) cannot be checked; it is read as
    is. A consistent rewrite of both files is not caught: whoever can do that owns the model.
    """
    path = Path(path)
    config = config or read_config(path)
    recorded = config.require_tokenizer(path / CONFIG_FILE).sha256
    file = path / TOKENIZER_FILE
    data = _read_file(file)
    actual = hashlib.sha256(data).hexdigest()
    if recorded is not None and actual != recorded:
        raise CheckpointError(
            f"{file}: sha256 {actual[:12]}… differs from the {recorded[:12]}… that "
            f"{CONFIG_FILE} records (a replaced tokenizer); not used"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{file}: not a tokenizer (not UTF-8 JSON)") from None


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


def save_optimizer_state(state_dict: dict, file: Path) -> None:
    """An optimizer `state_dict` as safetensors: every tensor of `state` under
    `state.<param>.<name>`, the rest (non-tensor state, `param_groups`) as JSON metadata."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict] = {}
    for param, values in state_dict["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{param}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(param), {})[name] = value
    metadata = {
        "format": _OPTIMIZER_FORMAT,
        "param_groups": json.dumps(state_dict["param_groups"]),
        "plain_state": json.dumps(plain),
    }
    safetensors.torch.save_file(tensors, str(file), metadata=metadata)
    os.chmod(file, FILE_MODE)


def save_tensors(tensors: dict[str, torch.Tensor], file: Path) -> None:
    """Plain named tensors (RNG states) as safetensors."""
    safetensors.torch.save_file(
        {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(file)
    )
    os.chmod(file, FILE_MODE)


def _read_file(file: Path) -> bytes:
    """A checkpoint file's bytes through one no-follow descriptor; CheckpointError says why not."""
    try:
        return read_bytes(file)
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing") from None
    except (UnsafeFileError, OSError) as exc:
        reason = exc.reason if isinstance(exc, UnsafeFileError) else exc.strerror or exc
        raise CheckpointError(f"{file}: cannot be read ({reason})") from None


def read_safetensors(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, read through one no-follow descriptor."""
    data = _read_file(file)
    try:
        size = int.from_bytes(data[:8], "little")
        if len(data) < 8 or size > min(MAX_HEADER_BYTES, len(data) - 8):
            raise ValueError("header size out of range")
        header = json.loads(data[8 : 8 + size])
        metadata = (header.get("__metadata__") or {}) if isinstance(header, dict) else None
        if not isinstance(metadata, dict):
            raise ValueError("header is not a JSON object")
        tensors = safetensors.torch.load(data)
    except (safetensors.SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{file}: not a valid safetensors file ({exc})") from None
    return tensors, metadata


def _state_key(param: str) -> int | str:
    return int(param) if param.isdigit() else param


def load_optimizer_state(path: Path) -> dict:
    """The optimizer's `state_dict` from folder `path`, never unpickling anything: safetensors
    plus JSON, or a legacy `optimizer.pt` through `_load_legacy_pickle`."""
    path = Path(path)
    file = path / OPTIMIZER_FILE
    legacy = path / LEGACY_OPTIMIZER_FILE
    if not file.exists() and not file.is_symlink() and (legacy.exists() or legacy.is_symlink()):
        return _load_legacy_pickle(legacy)
    tensors, metadata = read_safetensors(file)
    if metadata.get("format") != _OPTIMIZER_FORMAT:
        raise CheckpointError(f"{file}: not an optimizer state (format {metadata.get('format')!r})")
    try:
        param_groups = json.loads(metadata["param_groups"])
        plain = json.loads(metadata.get("plain_state", "{}"))
        state: dict = {}
        for param, values in plain.items():
            state.setdefault(_state_key(param), {}).update(values)
        for key, tensor in tensors.items():
            _, param, name = key.split(".", 2)
            state.setdefault(_state_key(param), {})[name] = tensor
    except (KeyError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{file}: malformed optimizer state ({exc})") from None
    return {"state": state, "param_groups": param_groups}


def _load_legacy_pickle(file: Path) -> dict:
    """The one place a `.pt` file is read: training states and checkpoints written before the
    safetensors format. `weights_only=True` (torch ≥ 2.10, the floor: no known loader flaw) loads
    tensors and plain containers only; anything else is refused with the file's name."""
    data = _read_file(file)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"{file}: cannot be loaded safely ({exc})") from None


def read_metrics(path: Path) -> list[dict]:
    """The metrics log, one row per logged step."""
    file = Path(path) / METRICS_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing")
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
