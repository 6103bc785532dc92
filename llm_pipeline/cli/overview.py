"""A corpus at a glance, for `corpus list` and `status`: its stages, its champion, what is stale.

Everything is read from the Dagster instance (materializations and their check evaluations,
through its public API) and from the files the stages wrote (the raw manifest, the champion's
`config.json`), so the CLI says what the UI would, without starting a webserver.

"Stale" is what a rerun would redo: a stage never materialized, materialized by older code
(its `code_version` changed), materialized before one of its inputs was, or downstream of a
stale stage; the raw files count as changed when their fingerprint (`fingerprint_files`) is no
longer the one `raw_corpus` recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llm_pipeline import paths
from llm_pipeline.errors import PipelineInputError


def pipeline_stages() -> tuple[str, ...]:
    """The stages `corpus_pipeline_job` runs, upstream first: read from the asset graph
    (`stage_assets.py`) and the job. Imported on call: the assets import torch."""
    from llm_pipeline.asset_graph import stage_order
    from llm_pipeline.automation.jobs import corpus_pipeline_job
    from llm_pipeline.stage_assets import ASSETS

    selected = {key.to_user_string() for key in corpus_pipeline_job.selection.resolve(ASSETS)}
    return tuple(name for name in stage_order(ASSETS) if name in selected)


def on_request_stages() -> tuple[str, ...]:
    """The stages a user asks for separately (`exported_model`), shown once they exist."""
    from llm_pipeline.asset_graph import stage_order
    from llm_pipeline.stage_assets import ASSETS

    pipeline = pipeline_stages()
    return tuple(name for name in stage_order(ASSETS) if name not in pipeline)


def when(timestamp: float | None) -> str:
    """A timestamp as `YYYY-MM-DD HH:MM UTC` ("-" if unknown)."""
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class Champion:
    """The promoted model of a corpus and whether its raw files changed since it was trained."""

    run_id: str
    val_bits_per_byte: float | None
    trained_at: float | None
    raw_changed: bool | None  # None: unknown (no fingerprint recorded, or no raw folder)

    def describe(self) -> str:
        bpb = "-" if self.val_bits_per_byte is None else f"{self.val_bits_per_byte:.4f}"
        stale = {
            True: "STALE: raw files changed since",
            False: "raw files unchanged",
            None: "raw files: unknown",
        }[self.raw_changed]
        return (
            f"champion {self.run_id}: {bpb} bits/byte (validation), trained "
            f"{when(self.trained_at)}; {stale}"
        )


def current_raw_fingerprint(corpus: str) -> str | None:
    """The fingerprint `raw_corpus` would record now, or None when the folder has no files."""
    from llm_pipeline.text.read.readers import corpus_files, fingerprint_files

    folder = paths.raw_dir(corpus)
    if not folder.is_dir():
        return None
    files = corpus_files(folder)
    return fingerprint_files(folder, files) if files else None


def read_champion(corpus: str, fingerprint: str | None = None) -> Champion | None:
    """The corpus's champion (`models/<corpus>/current`), or None when it has none."""
    from llm_pipeline.lm.store.checkpoint import CONFIG_FILE, read_config
    from llm_pipeline.lm.store.folders import CURRENT, read_pointer, run_dir

    run_id = read_pointer(corpus, CURRENT)
    if run_id is None:
        return None
    try:
        folder = run_dir(corpus, run_id)
        config = read_config(folder)
        trained_at = (folder / CONFIG_FILE).stat().st_mtime
    except (PipelineInputError, OSError):
        return Champion(run_id, None, None, None)
    summary = config.summary
    recorded = config.data.raw_fingerprint if config.data else None
    fingerprint = fingerprint if fingerprint is not None else current_raw_fingerprint(corpus)
    changed = None if recorded is None or fingerprint is None else recorded != fingerprint
    bpb = summary.val_bits_per_byte if summary else None
    return Champion(run_id, bpb, trained_at, changed)


@dataclass
class StageState:
    """One stage of one corpus: its last materialization, its checks, and why it is stale."""

    name: str
    materialized_at: float | None = None
    run_id: str | None = None
    code_version: str | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    check_notes: dict[str, str] = field(default_factory=dict)
    stale_because: str | None = None


def _latest_materialization(instance: Any, asset: str, corpus: str) -> Any:
    from dagster import AssetKey, AssetRecordsFilter

    result = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[corpus]), limit=1
    )
    return result.records[0] if result.records else None


def _checks_of(instance: Any, run_id: str, asset: str) -> tuple[dict[str, bool], dict[str, str]]:
    from dagster import DagsterEventType

    passed: dict[str, bool] = {}
    notes: dict[str, str] = {}
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.asset_key.to_user_string() != asset:
            continue
        passed[evaluation.check_name] = evaluation.passed
        if not evaluation.passed and evaluation.description:
            notes[evaluation.check_name] = evaluation.description
    return passed, notes


def stage_states(instance: Any, corpus: str, code_versions: dict[str, str | None]) -> list:
    """Each stage's `StageState`, upstream first; the on-request stages (`exported_model`)
    only once they exist."""
    from llm_pipeline.asset_graph import upstream
    from llm_pipeline.stage_assets import ASSETS
    from llm_pipeline.text.read.manifest import read_raw_manifest

    on_request = on_request_stages()
    inputs = upstream(ASSETS)
    states: dict[str, StageState] = {}
    for asset in (*pipeline_stages(), *on_request):
        state = StageState(asset)
        record = _latest_materialization(instance, asset, corpus)
        if record is not None:
            entry = record.event_log_entry
            state.materialized_at = entry.timestamp
            state.run_id = entry.run_id
            materialization = entry.dagster_event.event_specific_data.materialization
            state.code_version = (materialization.tags or {}).get("dagster/code_version")
            state.checks, state.check_notes = _checks_of(instance, entry.run_id, asset)
        elif asset in on_request:
            continue
        states[asset] = state

    for asset, state in states.items():
        upstream = [states[u] for u in inputs.get(asset, ()) if u in states]
        if state.materialized_at is None:
            state.stale_because = "never materialized"
        elif code_versions.get(asset) not in (None, state.code_version):
            state.stale_because = (
                f"code changed (version {state.code_version} → {code_versions[asset]})"
            )
        elif any(u.stale_because for u in upstream):
            names = ", ".join(u.name for u in upstream if u.stale_because)
            state.stale_because = f"{names} would be redone"
        elif any((u.materialized_at or 0) > state.materialized_at for u in upstream):
            names = ", ".join(
                u.name for u in upstream if (u.materialized_at or 0) > state.materialized_at
            )
            state.stale_because = f"{names} changed since"
        elif asset == "raw_corpus":
            manifest = read_raw_manifest(paths.documents_dir(corpus))
            fingerprint = current_raw_fingerprint(corpus)
            if manifest is not None and fingerprint != manifest.fingerprint:
                state.stale_because = "raw files changed since"
    return list(states.values())


def code_versions() -> dict[str, str | None]:
    """Each asset's current `code_version`, from the definitions."""
    from llm_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    out: dict[str, str | None] = {}
    for key in graph.get_all_asset_keys():
        out[key.to_user_string()] = graph.get(key).code_version
    return out


def raw_size(corpus: str) -> tuple[int, int]:
    """(files, bytes) under `data/raw/<corpus>/`."""
    folder: Path = paths.raw_dir(corpus)
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return len(files), sum(p.stat().st_size for p in files)
