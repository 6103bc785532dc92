"""Check a checkpoint's `config.json` against its weights' safetensors header before loading.

`config.json` and `model.safetensors` are files anyone who can write into `models/` can plant.
The model a config describes is built before its weights are loaded, so a config alone could
make the loader allocate gigabytes (`vocab_size: 2e7`) or fail deep inside torch (`1e12`). Here
the model is first built on torch's `meta` device (shapes only, no memory), and every tensor it
would hold is checked against the header of the weights file, read through one no-follow
descriptor with its size bounded: names, shapes, and data offsets that fit the file. Only then
is the real model built, so what is allocated is what the file on disk already holds, plus the
tables derived from the config (rotary angles), which are bounded here too.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from llm_pipeline.lm.model.networks import build_model
from llm_pipeline.lm.settings import ModelConfig
from llm_pipeline.lm.store.checkpoint_config import CheckpointError
from llm_pipeline.safe_open import UnsafeFileError, open_fd

# A safetensors header larger than this is not one of ours (ours: a few KB per parameter).
MAX_HEADER_BYTES = 64 << 20
# Buffers a model derives from its config (not stored in the weights) may take this much, or as
# much as the weights themselves when those are larger.
MAX_DERIVED_BYTES = 256 << 20
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
                "I8": 1, "U8": 1, "BOOL": 1}  # fmt: skip


def _corrupt(weights: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{weights}: corrupt or incompatible weights ({why})")


def read_header(weights: Path) -> tuple[dict[str, dict], int]:
    """The tensor entries of a safetensors file's header and the size of its data section,
    read without following links and refused by name when malformed or inconsistent."""
    try:
        fd = open_fd(weights)
    except FileNotFoundError:
        raise CheckpointError(f"{weights}: missing (incomplete checkpoint)") from None
    except (UnsafeFileError, OSError) as exc:
        reason = exc.reason if isinstance(exc, UnsafeFileError) else exc.strerror or exc
        raise CheckpointError(f"{weights}: cannot be read ({reason})") from None
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        prefix = fh.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
            raise _corrupt(weights, "header size out of range")
        raw = fh.read(length)
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise _corrupt(weights, f"header: {exc}") from None
    if not isinstance(header, dict):
        raise _corrupt(weights, "header is not an object")
    header.pop("__metadata__", None)
    data_bytes = size - 8 - length
    for name, entry in header.items():
        _check_entry(weights, name, entry, data_bytes)
    return header, data_bytes


def _check_entry(weights: Path, name: str, entry: object, data_bytes: int) -> None:
    try:
        shape, (begin, end) = list(entry["shape"]), entry["data_offsets"]  # type: ignore[index]
        width = _DTYPE_BYTES[entry["dtype"]]  # type: ignore[index]
        ok = all(isinstance(n, int) and n >= 0 for n in [*shape, begin, end])
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok or not begin <= end <= data_bytes or (end - begin) != math.prod(shape) * width:
        raise _corrupt(weights, f"tensor {name!r}: invalid header entry")


def check_weights_header(config: ModelConfig, weights: Path, config_file: Path) -> None:
    """Refuse, before any allocation, a config whose model does not match the weights file."""
    header, data_bytes = read_header(weights)
    with torch.device("meta"):
        skeleton = build_model(config)
    expected = skeleton.state_dict(keep_vars=True)
    unexpected = sorted(set(header) - set(expected))
    groups: dict[int, list[str]] = {}  # tied weights are one tensor under several names
    for name, tensor in expected.items():
        groups.setdefault(id(tensor), []).append(name)
    missing = sorted(names[0] for names in groups.values() if not set(names) & set(header))
    wrong = [
        f"{name} {list(header[name]['shape'])} (config: {list(tensor.shape)})"
        for name, tensor in expected.items()
        if name in header and list(header[name]["shape"]) != list(tensor.shape)
    ]
    if unexpected or missing or wrong:
        raise CheckpointError(
            f"{config_file}: the model it describes does not match {weights.name} "
            f"(shapes {wrong[:3]}, missing {missing[:3]}, unexpected {unexpected[:3]}); "
            "nothing was loaded"
        )
    derived = sum(  # buffers the model computes from its config, not stored in the file
        b.numel() * b.element_size() for n, b in skeleton.named_buffers() if n not in expected
    )
    if derived > max(MAX_DERIVED_BYTES, data_bytes):
        raise CheckpointError(
            f"{config_file}: block_size {config.block_size} needs {derived >> 20} MiB of derived "
            f"tables, more than the weights hold; nothing was loaded"
        )
