"""One place per setting: the core defines it, the launchpad, YAML, job file and checkpoint follow,
and a bad value is refused in a few readable lines before any stage runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from dagster import DagsterEventType

from llm_pipeline.asset_graph import stage_settings
from llm_pipeline.automation.schedules import (
    RETRAIN_CONFIG_ENV,
    InvalidScheduleSetting,
    retrain_run_config,
)
from llm_pipeline.cli import main
from llm_pipeline.definitions import defs
from llm_pipeline.lm.settings import PRESETS, TRAINED_MODEL, ModelConfig, TrainConfig
from llm_pipeline.lm.store.checkpoint import read_config
from llm_pipeline.lm.store.folders import LATEST, read_pointer, run_dir
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline.run_config import check_stages
from llm_pipeline.settings_base import SettingsError
from llm_pipeline.stage_assets import ASSETS
from llm_pipeline_tests.test_model_pipeline import TINY_MODEL, make_structured_corpus
from llm_pipeline_tests.test_pipeline import FAST

STAGES = stage_settings(ASSETS)


def _launchpad_fields(job_name: str, stage: str) -> dict:
    """The fields the launchpad shows for one asset's config in a job's run config schema."""
    ops = defs.resolve_job_def(job_name).run_config_schema.config_type.fields["ops"]
    config = ops.config_type.fields[stage].config_type.fields["config"]
    return config.config_type.fields


def test_every_core_setting_is_in_the_launchpad_with_the_same_default() -> None:
    seen = 0
    for name, stage in STAGES.items():
        job = "corpus_export_job" if name == "exported_model" else "corpus_pipeline_job"
        fields = _launchpad_fields(job, name)
        assert set(fields) == {spec.name for spec in stage.specs}, name
        for spec in stage.specs:
            field = fields[spec.name]
            assert field.default_provided, f"{name}.{spec.name}"
            assert field.default_value == spec.default, f"{name}.{spec.name}"
            assert spec.doc and field.description.startswith(spec.doc), f"{name}.{spec.name}"
            seen += 1
    # Every field of the trainer's two configs is a trained_model key, except the vocabulary
    # (the tokenizer's), so nothing a user could want is out of reach.
    model_keys = set(ModelConfig.model_fields) - {"vocab_size"}
    train_keys = set(TrainConfig.model_fields)
    assert model_keys | train_keys <= {s.name for s in TRAINED_MODEL.specs}
    assert {"beta1", "beta2", "rope_base", "position", "norm", "bias", "dropout"} <= model_keys | (
        train_keys
    )
    assert seen > 60
    # One set of defaults: the core classes, the stage and the launchpad agree (make run's).
    assert (ModelConfig().n_layer, TrainConfig().batch_size, TrainConfig().max_seconds) == (
        2,
        8,
        300.0,
    )
    for preset in PRESETS.values():
        assert preset.model_fields_set <= {s.name for s in TRAINED_MODEL.specs}


def test_from_dict_refuses_unknown_keys_and_fills_missing_ones() -> None:
    older = ModelConfig.from_dict({"architecture": "gpt", "vocab_size": 300, "n_layer": 3})
    assert (older.n_layer, older.rope_base, older.norm) == (3, ModelConfig().rope_base, "rms")
    with pytest.raises(SettingsError, match=r'unknown setting "n_layers" \(did you mean n_layer'):
        ModelConfig.from_dict({"n_layers": 3})
    with pytest.raises(SettingsError, match="did you mean beta2"):
        TrainConfig.from_dict({"betta2": 0.9})


def test_beta2_in_a_yaml_file_reaches_the_checkpoint(
    tmp_path: Path, data_root: Path, instance
) -> None:
    make_structured_corpus(tmp_path / "src")
    assert main(["corpus", "add", "yamlbeta", str(tmp_path / "src")]) == 0
    # test_model_pipeline's tiny model: just enough steps to pass the unigram check
    model = dict(TINY_MODEL)
    model.update(beta2=0.95, rope_base=5000.0, norm="layer", measure_mfu=False)
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "cleaned_corpus": {"workers": 1},
                "tokenizer": {"vocab_size": 300},
                "trained_model": model,
                "evaluation_report": {"max_new_tokens": 2, "prompts": ["The"]},
            }
        )
    )
    assert main(["run", "--corpus", "yamlbeta", "--config", str(config)]) == 0
    saved = read_config(run_dir("yamlbeta", read_pointer("yamlbeta", LATEST)))
    assert saved.training["beta2"] == 0.95
    assert (saved.model["rope_base"], saved.model["norm"]) == (5000.0, "layer")
    # the checkpoint records every core setting, so it reloads with no default guessed
    assert set(saved.model) == set(ModelConfig.model_fields)
    assert set(saved.training) == set(TrainConfig.model_fields)


BAD_VALUES = [
    ({"trained_model": {"n_layers": 3}}, 'trained_model.n_layers: unknown setting "n_layers"'),
    ({"trained_model": {"n_layers": 3}}, "did you mean n_layer?"),
    ({"trained_modl": {"n_layer": 3}}, "unknown asset(s) ['trained_modl'] (did you mean"),
    ({"trained_model": {"n_embd": 130}}, "trained_model: n_embd: n_embd (130) must be divisible"),
    ({"trained_model": {"preset": "huge"}}, "trained_model: preset: preset must be one of"),
    ({"trained_model": {"architecture": "lstm"}}, "architecture must be one of 'gpt', 'gru'"),
    ({"cleaned_corpus": {"profile": "blog"}}, "cleaned_corpus: profile: profile must be one of"),
    (
        {"cleaned_corpus": {"thresholds": {"quality.min_wordz": 3}}},
        "cleaned_corpus: thresholds.quality.min_wordz: quality has no 'min_wordz' "
        "(did you mean quality.min_words?)",
    ),
    (
        {"trained_model": {"nproc_per_node": (os.cpu_count() or 1) + 1, "device": "cpu"}},
        f"trained_model: nproc_per_node: nproc_per_node {(os.cpu_count() or 1) + 1} must be "
        "between 1 and the",
    ),
    (
        {"trained_model": {"nproc_per_node": 2, "batch_size": 3, "device": "cpu"}},
        "trained_model: batch_size: 3 must divide evenly over nproc_per_node (2)",
    ),
    (
        {"trained_model": {"learning_rate": -1}},
        "trained_model: learning_rate: Input should be greater than 0, got -1",
    ),
    (
        {"trained_model": {"max_seconds": -5}},
        "trained_model: max_seconds: Input should be greater than or equal to 0, got -5",
    ),
    ({"trained_model": {"n_layer": "many"}}, "trained_model: n_layer: expected int, got 'many'"),
    ({"trained_model": {"compile": "yes"}}, "trained_model: compile: expected bool"),
    ({"tokenizer": {"vocab_size": 10}}, "tokenizer: vocab_size: Input should be greater than"),
    (
        {"trained_model": {"max_seconds": 0, "max_steps": 0}},
        "trained_model: max_steps: all budgets are 0",
    ),
]


def test_core_check_names_stage_key_and_bound() -> None:
    for values, expected in BAD_VALUES:
        with pytest.raises(SettingsError) as refused:
            check_stages(values, "my.yaml", STAGES)
        message = str(refused.value)
        assert message.startswith("my.yaml: ") and expected in message, (values, message)
        assert len(message) < 300 and "\n" not in message
    assert check_stages({"trained_model": {"beta2": 0.95, "preset": "small"}}, "ok.yaml", STAGES)


@pytest.mark.parametrize("command", ["run", "materialize", "backfill"])
def test_cli_refuses_bad_values_before_any_stage_runs(
    command: str, tmp_path: Path, data_root: Path, instance, capsys
) -> None:
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["c"])
    (data_root / "raw" / "c").mkdir(parents=True)
    (data_root / "raw" / "c" / "a.txt").write_text("Some text to read.\n")
    bad = tmp_path / "my.yaml"
    for values, expected in BAD_VALUES:
        bad.write_text(yaml.safe_dump(values))
        assert main([command, "--corpus", "c", "--config", str(bad)]) == 2, values
        err = capsys.readouterr().err
        assert f"{bad}: " in err and expected in err, (values, err)
        assert len(err.splitlines()) <= 3
    assert not instance.get_runs() and not instance.get_backfills()
    assert not (data_root / "documents").exists()


def test_schedule_refuses_bad_values_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "retrain.yaml"
    bad.write_text("trained_model: {max_seconds: -5}\n")
    monkeypatch.setenv(RETRAIN_CONFIG_ENV, str(bad))
    with pytest.raises(InvalidScheduleSetting, match="greater than or equal to 0, got -5") as e:
        retrain_run_config(STAGES)
    assert str(e.value).startswith(f"{bad}: trained_model: max_seconds: ")


def test_launchpad_run_with_a_bad_model_fails_at_its_first_step(data_root: Path, instance) -> None:
    make_structured_corpus(data_root / "raw" / "pad", n_docs=20)
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["pad"])
    job = defs.resolve_job_def("corpus_pipeline_job")
    result = job.execute_in_process(
        instance=instance,
        partition_key="pad",
        run_config={"ops": {**FAST, "trained_model": {"config": {"n_embd": 130}}}},
        raise_on_error=False,
    )
    assert not result.success
    failed = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert [e.step_key for e in failed] == ["raw_corpus"]
    message = failed[0].event_specific_data.user_failure_data.description
    assert message == (
        "launchpad run config: trained_model: n_embd: n_embd (130) must be divisible by n_head (4)"
    )
    assert not result.get_asset_materialization_events()
    assert not (data_root / "documents" / "pad").exists()
