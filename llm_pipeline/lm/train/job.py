"""The trainer's job file: everything the `trained_model` stage hands to the trainer process.

`trainer_job` builds it from the corpus's folders and the stage's settings; the asset writes it
and `python -m llm_pipeline.lm.train.trainer_main --job` reads it back. The settings travel as the
`TrainedModelSettings` model's own JSON and are read back into that model, which the training
loop takes as it is: launchpad `Config` → `TrainedModelSettings` → its JSON → the same model.

Versions: 0 (before versions) kept the tokenizer and data blocks under a `checkpoint` key; 1 had
the settings as two dicts, `model` and `training`, plus `max_eval_tokens`. Both are upgraded on
reading.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
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
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.lm.settings import TRAINED_MODEL, TrainedModelSettings
from llm_pipeline.lm.store.checkpoint_config import DataInfo, TokenizerInfo
from llm_pipeline.tokens.bpe import TOKENIZER_FILE

JOB_FORMAT_VERSION = 2
WHAT = "trainer job"


@dataclass
class TrainerJob:
    """One training run: its settings, where the inputs are and where the outputs go."""

    settings: TrainedModelSettings
    shards: str
    out_dir: str
    tokenizer_path: str
    run_id: str
    corpus: str
    tokenizer: TokenizerInfo
    data: DataInfo
    state_root: str | None = None
    tracking: dict[str, Any] | None = (
        None  # MLflow store, params, tags (lm/tracking/training_runs.py)
    )
    format_version: int = JOB_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {
            **values,
            "settings": self.settings.to_dict(),
            "tokenizer": asdict(self.tokenizer),
            "data": asdict(self.data),
            VERSION_KEY: JOB_FORMAT_VERSION,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], file: Path | str = "job.json") -> TrainerJob:
        version = format_version(data, JOB_FORMAT_VERSION, file, WHAT)
        if version == 0:
            data = _upgrade_from_0(data, file)
        if version <= 1:
            data = _upgrade_from_1(data)
        values = dataclass_fields(cls, data, file, WHAT)
        try:
            values["settings"] = TrainedModelSettings.from_dict(values["settings"])
        except PipelineInputError as exc:
            raise ContractError(f"{file}: {WHAT} settings: {exc}") from None
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


def _upgrade_from_1(data: dict[str, Any]) -> dict[str, Any]:
    rest = {k: v for k, v in data.items() if k not in ("model", "training", "max_eval_tokens")}
    settings = {**(data.get("model") or {}), **(data.get("training") or {})}
    if "max_eval_tokens" in data:
        settings["max_eval_tokens"] = data["max_eval_tokens"]
    return {**rest, "settings": settings}


def trainer_job(
    given: dict[str, Any],
    *,
    corpus: str,
    run_id: str,
    shards: Path,
    out_dir: Path,
    state_root: Path,
    raw_fingerprint: str | None,
    tracking: dict[str, Any] | None,
) -> TrainerJob:
    """The job of one training run on `shards` with the settings a user gave (preset resolved,
    vocabulary from the shards' tokenizer, every rule checked). Refuses shards whose tokenizer
    file is not the one they were encoded with."""
    from llm_pipeline.tokens.bpe import file_sha256
    from llm_pipeline.tokens.shards import read_meta

    tokenizer_path = shards / TOKENIZER_FILE
    try:
        meta = read_meta(shards)
    except FileNotFoundError:
        raise PipelineInputError(f"corpus {corpus!r}: no token shards in {shards}") from None
    tokenizer_sha = file_sha256(tokenizer_path) if tokenizer_path.is_file() else None
    if tokenizer_sha != meta.get("tokenizer_sha256"):
        raise PipelineInputError(
            f"corpus {corpus!r}: {tokenizer_path} does not match the tokenizer the shards were "
            "encoded with; re-materialize token_shards"
        )
    try:
        settings = TRAINED_MODEL.settings(given, {"vocab_size": meta["vocab_size"]})
    except PipelineInputError as exc:
        raise PipelineInputError(f"trained_model config: {exc}") from None
    assert isinstance(settings, TrainedModelSettings)
    return TrainerJob(
        settings=settings,
        shards=str(shards),
        state_root=str(state_root),
        out_dir=str(out_dir),
        tokenizer_path=str(tokenizer_path),
        run_id=run_id,
        corpus=corpus,
        tokenizer=TokenizerInfo(sha256=tokenizer_sha, eot_id=meta["eot_id"], file=TOKENIZER_FILE),
        data=DataInfo(
            corpus=corpus,
            raw_fingerprint=raw_fingerprint,
            shards={k: meta[k] for k in ("dtype", "vocab_size", "splits")},
        ),
        tracking=tracking,
    )
