"""The typed contracts between stages (job file, checkpoint config, raw manifest) and the
champion/challenger rule: JSON round trips, old files read, newer ones refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_pipeline.contracts import ContractError
from llm_pipeline.lm.settings import ModelConfig, TrainConfig, TrainedModelSettings
from llm_pipeline.lm.store.checkpoint import CheckpointError, read_config
from llm_pipeline.lm.store.checkpoint_config import (
    CHECKPOINT_FORMAT_VERSION,
    CheckpointConfig,
    DataInfo,
    TokenizerInfo,
    TrainingSummary,
)
from llm_pipeline.lm.train.job import JOB_FORMAT_VERSION, TrainerJob
from llm_pipeline.report.promotion import FIRST_MODEL, decide_promotion
from llm_pipeline.text.read.manifest import (
    MANIFEST_FILE,
    MANIFEST_FORMAT_VERSION,
    RawManifest,
    read_raw_manifest,
)

TOKENIZER = TokenizerInfo(eot_id=0, sha256="ab" * 32)
DATA = DataInfo(corpus="c", raw_fingerprint="f" * 64, shards={"dtype": "uint16"})
SUMMARY = TrainingSummary(
    run_id="r1",
    corpus="c",
    steps=10,
    tokens_seen=1280,
    training_seconds=1.5,
    tokens_per_s=853.3,
    stop_reason="max_steps",
    parameters=1234,
    val_loss=4.2,
    val_bits_per_byte=1.9,
    unigram_bits_per_byte=2.5,
)


def job() -> TrainerJob:
    return TrainerJob(
        settings=TrainedModelSettings(vocab_size=300, beta2=0.95, max_eval_tokens=4096),
        shards="/data/tokens/c",
        out_dir="/models/c/r1",
        tokenizer_path="/data/tokens/c/tokenizer.json",
        run_id="r1",
        corpus="c",
        tokenizer=TOKENIZER,
        data=DATA,
        state_root="/models/c/_training_state",
    )


def checkpoint_config() -> CheckpointConfig:
    return CheckpointConfig(
        model=ModelConfig(vocab_size=300).to_dict(),
        training=TrainConfig().to_dict(),
        tokenizer=TOKENIZER,
        data=DATA,
        summary=SUMMARY,
    )


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_trainer_job_round_trips_through_its_file(tmp_path: Path) -> None:
    file = tmp_path / "job.json"
    job().write(file)
    assert json.loads(file.read_text())["format_version"] == JOB_FORMAT_VERSION
    back = TrainerJob.read(file)
    assert back == job()
    assert back.settings.beta2 == 0.95 and back.settings.vocab_size == 300


def test_a_job_file_without_a_version_is_upgraded(tmp_path: Path) -> None:
    """Version 0 kept the tokenizer and data blocks under `checkpoint`."""
    old = version_1_job()
    old.pop("format_version")
    old["checkpoint"] = {"tokenizer": old.pop("tokenizer"), "data": old.pop("data")}
    assert TrainerJob.read(write(tmp_path / "job.json", old)) == job()


def version_1_job() -> dict:
    """Version 1 held the settings as `model` and `training` dicts and `max_eval_tokens`."""
    data = job().to_dict()
    settings = job().settings
    data.pop("settings")
    return {
        **data,
        "model": ModelConfig.fields_of(settings),
        "training": TrainConfig.fields_of(settings),
        "max_eval_tokens": settings.max_eval_tokens,
        "format_version": 1,
    }


def test_a_version_1_job_file_is_read_into_the_settings_model(tmp_path: Path) -> None:
    back = TrainerJob.read(write(tmp_path / "job.json", version_1_job()))
    assert back == job() and back.settings.max_eval_tokens == 4096


def test_a_newer_job_file_is_refused_naming_the_file_and_version(tmp_path: Path) -> None:
    file = write(tmp_path / "job.json", {**job().to_dict(), "format_version": 99})
    with pytest.raises(ContractError, match=rf"{file}: trainer job has format version 99"):
        TrainerJob.read(file)


def test_a_job_with_an_unknown_or_missing_field_is_refused_by_name(tmp_path: Path) -> None:
    data = job().to_dict()
    with pytest.raises(ContractError, match="unknown field.*: max_eval_tokenz"):
        TrainerJob.from_dict({**data, "max_eval_tokenz": 1}, tmp_path / "job.json")
    data.pop("run_id")
    with pytest.raises(ContractError, match=r"job.json: trainer job is missing field.*: run_id"):
        TrainerJob.from_dict(data, tmp_path / "job.json")


def test_checkpoint_config_round_trips(tmp_path: Path) -> None:
    config = checkpoint_config()
    data = json.loads(json.dumps(config.to_dict()))
    assert data["format_version"] == CHECKPOINT_FORMAT_VERSION
    assert data["summary"]["val_bits_per_byte"] == 1.9
    assert CheckpointConfig.from_dict(data) == config
    assert config.model_config() == ModelConfig(vocab_size=300)


def test_a_checkpoint_written_before_versions_still_loads(tmp_path: Path) -> None:
    """The layout of existing checkpoints: no version, and a summary without the newer keys."""
    old = checkpoint_config().to_dict()
    old.pop("format_version")
    for key in ("mfu", "peak_flops", "flops_per_token", "processes", "resumed_from_step"):
        old["summary"].pop(key)
    old["summary"]["retired_key"] = 1  # a field no longer written is dropped, not fatal
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = read_config(tmp_path)
    assert config.format_version == CHECKPOINT_FORMAT_VERSION
    assert config.summary.val_bits_per_byte == 1.9
    assert config.summary.processes == 1 and config.summary.mfu is None
    assert config.require_tokenizer(tmp_path).eot_id == 0


def test_a_newer_checkpoint_is_refused_naming_the_file_and_version(tmp_path: Path) -> None:
    write(tmp_path / "config.json", {**checkpoint_config().to_dict(), "format_version": 7})
    with pytest.raises(
        CheckpointError, match=r"config.json: checkpoint config has format version 7"
    ):
        read_config(tmp_path)


def test_a_current_checkpoint_with_a_broken_summary_is_refused_by_name(tmp_path: Path) -> None:
    data = checkpoint_config().to_dict()
    data["summary"].pop("val_bits_per_byte")
    write(tmp_path / "config.json", data)
    with pytest.raises(CheckpointError, match="summary is missing field.*val_bits_per_byte"):
        read_config(tmp_path)


def test_a_checkpoint_without_a_summary_loads_but_has_no_figures(tmp_path: Path) -> None:
    write(tmp_path / "config.json", {"model": ModelConfig(vocab_size=300).to_dict()})
    config = read_config(tmp_path)
    with pytest.raises(CheckpointError, match="no training summary"):
        config.require_summary(tmp_path)


def test_raw_manifest_round_trips_and_reads_the_unversioned_layout(tmp_path: Path) -> None:
    manifest = RawManifest(corpus="c", fingerprint="f" * 64, stats={"documents": 3})
    file = manifest.write(tmp_path)
    assert json.loads(file.read_text())["format_version"] == MANIFEST_FORMAT_VERSION
    assert read_raw_manifest(tmp_path) == manifest
    write(file, {"corpus": "c", "fingerprint": "f" * 64, "stats": {"documents": 3}})
    assert read_raw_manifest(tmp_path) == manifest
    assert read_raw_manifest(tmp_path / "nowhere") is None


def test_a_newer_or_broken_raw_manifest_is_refused_naming_the_file(tmp_path: Path) -> None:
    file = write(tmp_path / MANIFEST_FILE, {"corpus": "c", "fingerprint": "x", "format_version": 2})
    with pytest.raises(ContractError, match=rf"{file}: raw manifest has format version 2"):
        read_raw_manifest(tmp_path)
    file.write_text("[1, 2")
    with pytest.raises(ContractError, match=rf"{file}: not valid JSON"):
        read_raw_manifest(tmp_path)


@pytest.mark.parametrize(
    ("champion", "champion_bpb", "challenger_bpb", "promoted", "reason"),
    [
        (None, None, 2.0, True, FIRST_MODEL),
        ("new", None, 2.0, True, FIRST_MODEL),  # the challenger is already current
        ("old", None, 2.0, True, "champion old could not be loaded"),
        ("old", 2.0, 2.0, True, "no worse than the champion on the same validation text"),
        ("old", 2.1, 2.0, True, "no worse than the champion on the same validation text"),
        ("old", 1.9, 2.0, False, "worse than the champion on the same validation text"),
    ],
)
def test_promotion_rule(
    champion: str | None,
    champion_bpb: float | None,
    challenger_bpb: float,
    promoted: bool,
    reason: str,
) -> None:
    decision = decide_promotion("new", challenger_bpb, champion, champion_bpb)
    assert (decision.promoted, decision.reason) == (promoted, reason)
    comparison = decision.as_comparison()
    assert comparison["promoted"] is promoted and comparison["challenger_bpb"] == challenger_bpb
    if champion_bpb is not None:
        assert comparison["difference"] == pytest.approx(challenger_bpb - champion_bpb)
    if champion == "new":
        assert comparison["champion_run"] is None


def test_promotion_reason_names_the_text_it_was_decided_on() -> None:
    decision = decide_promotion("new", 1.0, "old", 1.5, text="held-out file notes.txt")
    assert decision.reason == "no worse than the champion on the same held-out file notes.txt"


def test_lm_modules_import_one_another_without_a_cycle() -> None:
    """The trainer has one entry module; training and evaluation share `lm.device` instead of
    importing each other (`python -m llm_pipeline.lm.train.loop` used to re-import itself)."""
    import ast
    import graphlib

    import llm_pipeline.lm

    folder = Path(llm_pipeline.lm.__file__).parent
    graph: dict[str, set[str]] = {}
    for file in folder.rglob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "llm_pipeline.lm."
            ):
                imported.add(node.module.removeprefix("llm_pipeline.lm."))
        name = ".".join(file.relative_to(folder).with_suffix("").parts)
        graph[name.removesuffix(".__init__")] = imported
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on a cycle
    assert "train.trainer_main" not in graph["train.loop"]
    assert "train.loop" not in graph["evaluate"]


def test_launchpad_settings_reach_the_trainer_as_the_same_model(tmp_path: Path) -> None:
    """Three forms from the launchpad to the loop: the derived Dagster `Config`, the core
    `TrainedModelSettings` (preset resolved, vocabulary filled, validated once), and its JSON in
    the job file, which the trainer reads back into the same model and hands to the loop."""
    from llm_pipeline.assets.model import TrainedModelConfig

    launchpad = TrainedModelConfig(preset="small", n_layer=3, max_seconds=12.5)
    settings = launchpad.settings(vocab_size=300)
    assert type(settings) is TrainedModelSettings
    assert (settings.n_layer, settings.n_embd, settings.max_seconds) == (3, 384, 12.5)
    file = tmp_path / "job.json"
    TrainerJob(**{**vars(job()), "settings": settings}).write(file)
    assert json.loads(file.read_text())["settings"] == settings.to_dict()
    back = TrainerJob.read(file).settings
    assert type(back) is TrainedModelSettings and back == settings
    # the loop takes it as its model and training config: no conversion in between
    assert isinstance(back, ModelConfig) and isinstance(back, TrainConfig)
