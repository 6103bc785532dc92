"""KV-cache generation gives the same tokens as re-running the whole context every step."""

from __future__ import annotations

import pytest
import torch

from llm_pipeline.lm.model.networks import build_model, generate
from llm_pipeline.lm.settings import ModelConfig

CONFIG = {"vocab_size": 300, "block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32}
# GPT-2/nanoGPT parts: learned positions, LayerNorm, biases
BASELINE = {**CONFIG, "position": "learned", "norm": "layer", "bias": True}


def _model(config: dict = CONFIG) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig(**config)).eval()
    # a trained-looking model: larger weights than the init, so logits are far from ties
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(4.0)
    return model


@pytest.mark.parametrize("config", [CONFIG, BASELINE], ids=["ours", "baseline"])
def test_cached_forward_matches_full_forward_chunk_by_chunk(config: dict) -> None:
    model = _model(config)
    idx = torch.randint(0, 300, (2, 20))
    full, _ = model(idx)
    cache = model.new_cache()
    pieces = [model(idx[:, a:b], cache=cache)[0] for a, b in ((0, 7), (7, 8), (8, 15), (15, 20))]
    assert cache.length == 20
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="exceeds block_size"):
        model(torch.zeros(2, 13, dtype=torch.long), cache=cache)


@pytest.mark.parametrize("config", [CONFIG, BASELINE], ids=["ours", "baseline"])
@pytest.mark.parametrize(("prompt_len", "new"), [(3, 20), (10, 50), (40, 5)])
def test_greedy_generation_with_and_without_cache_is_identical(
    prompt_len: int, new: int, config: dict
) -> None:
    """Short runs, runs that outgrow block_size (32) and prompts longer than it."""
    model = _model(config)
    prompt = torch.randint(0, 300, (2, prompt_len), generator=torch.Generator().manual_seed(1))
    cached = generate(model, prompt, new, temperature=0, use_cache=True)
    uncached = generate(model, prompt, new, temperature=0, use_cache=False)
    assert cached.shape == (2, prompt_len + new)
    assert torch.equal(cached, uncached)
    assert len(set(cached[0, prompt_len:].tolist())) > 1  # not a degenerate constant output


def test_sampling_with_cache_follows_the_generator() -> None:
    model = _model()
    prompt = torch.tensor([[1, 2, 3]])
    runs = [
        generate(model, prompt, 15, top_k=10, generator=torch.Generator().manual_seed(5))
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    uncached = generate(
        model, prompt, 15, top_k=10, generator=torch.Generator().manual_seed(5), use_cache=False
    )
    assert torch.equal(runs[0], uncached)


def test_baseline_parts_are_gpt2s() -> None:
    model = _model(BASELINE)
    names = dict(model.named_parameters())
    assert names["wpe.weight"].shape == (32, 32)
    assert "blocks.0.attn.qkv.bias" in names and "blocks.0.mlp.fc.bias" in names
    assert isinstance(model.norm_f, torch.nn.LayerNorm)
    ours = dict(_model().named_parameters())
    assert "wpe.weight" not in ours and not any(n.endswith(".bias") for n in ours)
    with pytest.raises(ValueError, match="position must be one of"):
        ModelConfig(**{**CONFIG, "position": "sinusoid"})
