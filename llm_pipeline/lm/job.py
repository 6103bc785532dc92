"""The trainer's job file: everything the `trained_model` asset hands to the trainer process.

The asset builds a `TrainerJob` and writes it; `python -m llm_pipeline.lm.trainer_main --job`
reads it back. Both sides use this one class, so a field cannot be written under one name and
read under another. Version 0 (before versions existed) kept the tokenizer and data blocks under
a `checkpoint` key; it is upgraded on reading.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llm_pipeline.atomic import write_json_atomic
from llm_pipeline.contracts import (
    VERSION_KEY,
    ContractError,
    dataclass_fields,
    format_version,
    read_json_object,
)
from llm_pipeline.lm.checkpoint_config import DataInfo, TokenizerInfo

JOB_FORMAT_VERSION = 1
WHAT = "trainer job"


@dataclass
class TrainerJob:
    """One training run: settings (as `to_dict()`), where the inputs are and the outputs go."""

    model: dict[str, Any]
    training: dict[str, Any]
    shards: str
    out_dir: str
    tokenizer_path: str
    max_eval_tokens: int
    run_id: str
    corpus: str
    tokenizer: TokenizerInfo
    data: DataInfo
    state_root: str | None = None
    tracking: dict[str, Any] | None = None  # MLflow store, params, tags (lm/tracking.py)
    format_version: int = JOB_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), VERSION_KEY: JOB_FORMAT_VERSION}

    @classmethod
    def from_dict(cls, data: dict[str, Any], file: Path | str = "job.json") -> TrainerJob:
        version = format_version(data, JOB_FORMAT_VERSION, file, WHAT)
        if version == 0:
            data = _upgrade_from_0(data, file)
        values = dataclass_fields(cls, data, file, WHAT)
        values["tokenizer"] = TokenizerInfo(
            **dataclass_fields(TokenizerInfo, values["tokenizer"], file, "job tokenizer")
        )
        values["data"] = DataInfo(**dataclass_fields(DataInfo, values["data"], file, "job data"))
        values["format_version"] = JOB_FORMAT_VERSION
        return cls(**values)

    def write(self, file: Path) -> None:
        write_json_atomic(file, self.to_dict())

    @classmethod
    def read(cls, file: Path) -> TrainerJob:
        return cls.from_dict(read_json_object(file, WHAT), file)


def _upgrade_from_0(data: dict[str, Any], file: Path | str) -> dict[str, Any]:
    checkpoint = data.get("checkpoint")
    if not isinstance(checkpoint, dict):
        raise ContractError(f"{file}: {WHAT} of format version 0 has no 'checkpoint' block")
    rest = {k: v for k, v in data.items() if k != "checkpoint"}
    return {**rest, "tokenizer": checkpoint.get("tokenizer"), "data": checkpoint.get("data")}
