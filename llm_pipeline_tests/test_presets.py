"""Presets fill only the settings a user did not give, in plain code and through Dagster config."""

# no `from __future__ import annotations`: Dagster must resolve the asset's Config annotation
import dagster as dg
import pytest
import torch

from llm_pipeline.assets.model import TrainedModelConfig
from llm_pipeline.lm.model.networks import build_model, count_parameters
from llm_pipeline.lm.settings import PRESETS, TrainedModelSettings


def test_gpt2_124m_preset_has_gpt2_small_shape_and_size() -> None:
    model_config = TrainedModelSettings.resolve({"preset": "gpt2-124m", "vocab_size": 50257})
    assert (model_config.n_layer, model_config.n_head, model_config.n_embd) == (12, 12, 768)
    assert model_config.block_size == 1024
    with torch.device("meta"):  # shapes only: no 500 MB of weights allocated
        model = build_model(model_config)
    # GPT-2 small has 124M with learned positions (0.8M); ours uses rotary positions instead
    assert 123_000_000 < count_parameters(model) < 124_500_000
    train = model_config
    assert (train.learning_rate, train.beta2, train.grad_accum_steps) == (6e-4, 0.95, 8)


def test_explicit_settings_override_the_preset() -> None:
    given = {"preset": "gpt2-124m", "n_layer": 2, "learning_rate": 1e-3}
    settings = TrainedModelSettings.resolve(given)
    assert (settings.n_layer, settings.n_embd, settings.learning_rate) == (2, 768, 1e-3)
    # no preset: the field defaults, untouched
    assert TrainedModelSettings.resolve({}) == TrainedModelSettings()
    # a preset is a partial instance of the same model: its fields are the ones it sets
    for preset in PRESETS.values():
        assert preset.model_fields_set and "preset" not in preset.model_fields_set
        resolved = TrainedModelSettings.resolve(preset.model_dump(include=preset.model_fields_set))
        assert all(getattr(resolved, k) == getattr(preset, k) for k in preset.model_fields_set)
    with pytest.raises(ValueError, match="preset must be one of"):
        TrainedModelSettings.resolve({"preset": "huge"})


def test_preset_through_dagster_run_config() -> None:
    """Dagster fills defaults for fields a run config leaves out; those must not beat the preset."""
    seen = {}

    @dg.asset
    def probe(config: TrainedModelConfig) -> None:
        seen["model"] = seen["train"] = config.settings(vocab_size=1000)

    run_config = {"ops": {"probe": {"config": {"preset": "small", "n_layer": 3}}}}
    assert dg.materialize([probe], run_config=run_config).success
    assert (seen["model"].n_layer, seen["model"].n_embd) == (3, 384)
    assert seen["model"].block_size == 256 and seen["train"].batch_size == 32
