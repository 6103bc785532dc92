"""The checkpoint's `config.json`: what a trained model is, what it was trained on, how it did.

Written once by the trainer and read by the checks, the report, the schedule, the CLI and
sampling, all through `CheckpointConfig`, so a field is added in one place. Version 0 is the
layout before versions existed (the same fields, no `format_version`); it is read as is.
Version 2 adds the validation score's provenance to the summary (`validation_set`, what was
scored, the confidence); version 0 and 1 files load with those fields empty, and a model
without a `validation_set` is never compared on a stored score (report/promotion.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llm_pipeline.contracts import VERSION_KEY, dataclass_fields, format_version
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.lm.settings import ModelConfig

CHECKPOINT_FORMAT_VERSION = 2


class CheckpointError(PipelineInputError):
    """A checkpoint folder that is missing, incomplete or corrupt."""


@dataclass
class TokenizerInfo:
    """Which tokenizer the model reads: its file in the checkpoint, hash and end-of-text id."""

    eot_id: int
    sha256: str | None = None
    file: str = "tokenizer.json"


@dataclass
class DataInfo:
    """What the model was trained on: the corpus, its raw files' fingerprint, the shards."""

    corpus: str
    raw_fingerprint: str | None = None
    shards: dict[str, Any] = field(default_factory=dict)


@dataclass
class ValidationSet:
    """Which validation text a score is on: the split rule and the hash of the documents' keys
    (text/split/sides.py), and how much of it was scored (the first `documents`, in table order)."""

    rule: str
    keys_sha256: str
    documents: int = 0
    bytes: int = 0
    targets: int = 0
    stride: int = 0


@dataclass
class TrainingSummary:
    """The figures of a finished run. Bits per byte are on the validation split, scored once by
    lm/scoring.py; `validation_set` says on which text, `val_bits_per_byte_stderr` how sure."""

    run_id: str
    corpus: str
    steps: int
    tokens_seen: int
    training_seconds: float
    tokens_per_s: float
    stop_reason: str
    parameters: int
    val_loss: float
    val_bits_per_byte: float
    unigram_bits_per_byte: float
    final_train_loss: float | None = None
    device: str = ""
    dtype: str = ""
    processes: int = 1
    resumed_from_step: int = 0
    flops_per_token: float = 0.0
    peak_flops: float | None = None
    mfu: float | None = None
    validation_set: ValidationSet | None = None
    val_bits_per_byte_stderr: float | None = None
    eval_seconds: float | None = None


def _part(cls: type, data: Any, file: Path | str, what: str, strict: bool) -> Any:
    return cls(**dataclass_fields(cls, data, file, what, CheckpointError, strict))


@dataclass
class CheckpointConfig:
    """`config.json`: model and training settings (as their `to_dict()`), tokenizer, data and
    summary. `model` and `training` stay plain dicts so a checkpoint outlives setting changes;
    `model_config()` rebuilds the typed settings when they are needed. Only `model` is needed
    to load the weights; the trainer always writes every part."""

    model: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    tokenizer: TokenizerInfo | None = None
    data: DataInfo | None = None
    summary: TrainingSummary | None = None
    format_version: int = CHECKPOINT_FORMAT_VERSION

    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model)

    def require_summary(self, file: Path | str) -> TrainingSummary:
        """The summary, which only a finished training run writes; refused by name if absent."""
        if self.summary is None:
            raise CheckpointError(f"{file}: no training summary (not written by the trainer)")
        return self.summary

    def require_tokenizer(self, file: Path | str) -> TokenizerInfo:
        if self.tokenizer is None:
            raise CheckpointError(f"{file}: no tokenizer settings (eot_id)")
        return self.tokenizer

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), VERSION_KEY: CHECKPOINT_FORMAT_VERSION}

    @classmethod
    def from_dict(cls, data: dict[str, Any], file: Path | str = "config.json") -> CheckpointConfig:
        """Read any known version; an unknown field in a current file is refused by name.

        Version 0 files are the same layout without the version, and are read leniently (a
        field that is no longer written is dropped) so that old checkpoints keep loading.
        """
        version = format_version(data, CHECKPOINT_FORMAT_VERSION, file, "checkpoint config",
                                 CheckpointError)  # fmt: skip
        strict = version == CHECKPOINT_FORMAT_VERSION
        top = dataclass_fields(cls, data, file, "checkpoint config", CheckpointError, strict)
        for name in ("model", "training"):
            if not isinstance(top.get(name, {}), dict):
                raise CheckpointError(f"{file}: checkpoint config {name!r} must be an object")
        parts = {"tokenizer": TokenizerInfo, "data": DataInfo, "summary": TrainingSummary}
        for name, part in parts.items():
            if top.get(name) is not None:
                top[name] = _part(part, top[name], file, name, strict)
        summary = top.get("summary")
        if summary is not None and isinstance(summary.validation_set, dict):
            summary.validation_set = _part(
                ValidationSet, summary.validation_set, file, "validation_set", strict
            )
        return cls(**{**top, "format_version": CHECKPOINT_FORMAT_VERSION})
