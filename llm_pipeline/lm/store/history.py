"""Every model a corpus has had: one record per run folder under `models/<corpus>/`.

Read by the report (the history plot and table), `corpus list` and `status`, always from the
checkpoints' own `config.json`, so the history needs no database and survives a new Dagster
instance. A folder without a readable config (a crashed or foreign one) is left out, not fatal.
A run counts as promoted if it is the champion now or its report recorded a promotion
(`promotion.json`, written by the evaluation report).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llm_pipeline.atomic import write_json_atomic
from llm_pipeline.contracts import read_json_object
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.lm.store.checkpoint import CONFIG_FILE, read_config
from llm_pipeline.lm.store.checkpoint_config import CheckpointError
from llm_pipeline.lm.store.folders import CURRENT, TRAINING_STATE, corpus_models_dir, read_pointer

PROMOTION_FILE = "promotion.json"


@dataclass(frozen=True)
class ModelRecord:
    """One trained model of a corpus; `trained_at` is when its checkpoint was written (epoch s)."""

    run_id: str
    trained_at: float
    architecture: str
    parameters: int
    tokens_seen: int
    val_bits_per_byte: float
    promoted: bool
    champion: bool
    raw_fingerprint: str | None


def read_promotion(folder: Path) -> dict:
    """The run's `promotion.json` (the report's decision and its `eval_files` scores), or {}
    when the run has no report yet or the file cannot be read."""
    try:
        return read_json_object(Path(folder) / PROMOTION_FILE, "promotion decision")
    except PipelineInputError:
        return {}


def _was_promoted(folder: Path) -> bool:
    return bool(read_promotion(folder).get("promoted"))


def record_promotion(run_folder: Path, decision: dict) -> None:
    """Keep the report's promotion decision (and `eval_files` scores) with the run, so the
    history and the export's model card can show them later."""
    write_json_atomic(Path(run_folder) / PROMOTION_FILE, decision)


def model_history(corpus: str, root: Path | None = None) -> list[ModelRecord]:
    """The corpus's finished models, oldest first."""
    folder = corpus_models_dir(corpus, root)
    if not folder.is_dir():
        return []
    champion = read_pointer(corpus, CURRENT, root)
    records = []
    for run in folder.iterdir():
        if not run.is_dir() or run.name.startswith(".") or run.name == TRAINING_STATE:
            continue
        try:
            config = read_config(run)
            trained_at = (run / CONFIG_FILE).stat().st_mtime
        except (CheckpointError, OSError):
            continue
        summary = config.summary
        if summary is None:
            continue
        records.append(
            ModelRecord(
                run_id=run.name,
                trained_at=trained_at,
                architecture=str(config.model.get("architecture", "?")),
                parameters=summary.parameters,
                tokens_seen=summary.tokens_seen,
                val_bits_per_byte=summary.val_bits_per_byte,
                promoted=run.name == champion or _was_promoted(run),
                champion=run.name == champion,
                raw_fingerprint=config.data.raw_fingerprint if config.data else None,
            )
        )
    return sorted(records, key=lambda r: (r.trained_at, r.run_id))
