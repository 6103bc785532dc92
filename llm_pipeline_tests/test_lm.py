"""Models, training loop, checkpoints, bits per byte and sampling, on tiny real data."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import safetensors.torch
import torch
from torch import nn

from llm_pipeline.lm.evaluate import (
    bits_per_byte,
    sum_nats,
    text_bits_per_byte,
    unigram_bits_per_byte,
)
from llm_pipeline.lm.model.networks import GRULanguageModel, build_model, generate
from llm_pipeline.lm.settings import ModelConfig, TrainConfig
from llm_pipeline.lm.store.checkpoint import (
    CheckpointError,
    load_model,
    load_optimizer_state,
    read_metrics,
    save_checkpoint,
)
from llm_pipeline.lm.train.loop import check_data_fits, learning_rate, train
from llm_pipeline.text.clean import document_id
from llm_pipeline.text.split.sides import split_key
from llm_pipeline.text.store import CLEANED_SCHEMA
from llm_pipeline.tokens.bpe import end_of_text_id, save_tokenizer, train_bpe
from llm_pipeline.tokens.shards import (
    iter_split_batches,
    open_split,
    write_shards,
)
from llm_pipeline_tests.conftest import make_document

TINY = {"vocab_size": 300, "block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32}


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real shards of a small generated corpus, encoded with a trained BPE."""
    root = tmp_path_factory.mktemp("shards")
    rng = random.Random(0)
    texts = [make_document(rng, rng.randint(30, 120)) for _ in range(300)]
    cleaned = root / "part-00000.parquet"
    pq.write_table(
        pa.table(
            {
                "doc_id": [document_id(t) for t in texts],
                "text": texts,
                "n_chars": [len(t) for t in texts],
                "source": ["gen"] * len(texts),
                "split_key": [split_key(t) for t in texts],
                "split": ["val" if i % 10 == 0 else "train" for i in range(len(texts))],
            },
            schema=CLEANED_SCHEMA,
        ),
        cleaned,
    )
    bpe = train_bpe([texts], vocab_size=300)
    save_tokenizer(bpe, root / "tokenizer.json")
    write_shards(bpe, iter_split_batches([cleaned]), root, end_of_text_id(bpe))
    return root


@pytest.mark.parametrize("architecture", ["gpt", "gru"])
def test_tiny_model_loss_falls(shards: Path, architecture: str) -> None:
    config = TrainConfig(
        max_steps=60,
        batch_size=8,
        learning_rate=5e-3,
        warmup_steps=5,
        eval_interval=20,
        eval_batches=4,
        log_interval=10,
        dtype="fp32",
    )
    rows: list[dict] = []
    result = train(ModelConfig(architecture=architecture, **TINY), config, shards, rows.append)
    val = [r["val_loss"] for r in result.history if r["val_loss"] is not None]
    assert result.steps == 60 and result.stop_reason == "max_steps"
    assert val[-1] < val[0], val
    assert val[-1] < math.log(300) - 1.0, val  # well below the untrained (uniform) loss
    assert rows == result.history
    assert {"step", "train_loss", "val_loss", "lr", "tokens_per_s", "percent", "eta_s"} <= set(
        rows[0]
    )
    assert rows[-1]["percent"] == pytest.approx(100.0)
    assert result.tokens_seen == 60 * 8 * 32


def test_training_is_reproducible_with_a_fixed_seed(shards: Path) -> None:
    config = TrainConfig(max_steps=5, batch_size=4, eval_interval=5, eval_batches=2, dtype="fp32")
    first = train(ModelConfig(**TINY), config, shards)
    second = train(ModelConfig(**TINY), config, shards)
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)


def test_time_budget_stops_training(shards: Path) -> None:
    config = TrainConfig(max_steps=0, max_seconds=1.0, batch_size=4, eval_interval=1000)
    result = train(ModelConfig(**TINY), config, shards)
    assert result.stop_reason == "max_seconds"
    assert 1.0 <= result.seconds < 10


def test_learning_rate_schedule() -> None:
    config = TrainConfig(learning_rate=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate(config, 0, 0.0) == pytest.approx(0.1)
    assert learning_rate(config, 9, 0.1) == pytest.approx(1.0)
    assert learning_rate(config, 10, 0.0) == pytest.approx(1.0)
    assert learning_rate(config, 50, 0.5) == pytest.approx(0.55)
    assert learning_rate(config, 99, 1.0) == pytest.approx(0.1)


def test_bad_shapes_fail_before_training(shards: Path) -> None:
    with pytest.raises(ValueError, match="divisible by n_head"):
        ModelConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="architecture"):
        ModelConfig(architecture="lstm")
    val_tokens = len(open_split(shards, "val"))
    with pytest.raises(ValueError, match=f"val split has {val_tokens} tokens"):
        check_data_fits(shards, ModelConfig(**{**TINY, "block_size": val_tokens + 10}))
    with pytest.raises(ValueError, match="budget"):
        TrainConfig(max_steps=0, max_tokens=0, max_seconds=0)


def test_gpt_ties_embeddings_and_has_no_biases() -> None:
    model = build_model(ModelConfig(**TINY))
    assert model.lm_head.weight is model.wte.weight
    assert not [n for n, _ in model.named_parameters() if n.endswith("bias")]


def _checkpoint(tmp_path: Path, shards: Path, architecture: str = "gpt") -> tuple[Path, nn.Module]:
    result = train(
        ModelConfig(architecture=architecture, **TINY),
        TrainConfig(max_steps=3, batch_size=4, eval_interval=3, eval_batches=1),
        shards,
    )
    out = tmp_path / "run"
    config = {"model": result.model.config.to_dict(), "tokenizer": {"eot_id": 0}}
    save_checkpoint(
        out, result.model, result.optimizer, config, result.history, shards / "tokenizer.json"
    )
    return out, result.model


@pytest.mark.parametrize("architecture", ["gpt", "gru"])
def test_safetensors_round_trip_is_exact(tmp_path: Path, shards: Path, architecture: str) -> None:
    out, model = _checkpoint(tmp_path, shards, architecture)
    loaded = load_model(out)
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    if architecture == "gpt":
        assert loaded.lm_head.weight is loaded.wte.weight
    state = load_optimizer_state(out)
    assert set(state) == {"state", "param_groups"}
    assert len(read_metrics(out)) >= 1
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "metrics.jsonl",
        "model.safetensors",
        "optimizer.safetensors",
        "tokenizer.json",
    ]


def test_gru_state_dict_saves_and_loads_as_plain_pytorch(tmp_path: Path) -> None:
    model = GRULanguageModel(ModelConfig(architecture="gru", **TINY))
    torch.save(model.state_dict(), tmp_path / "gru.pt")
    fresh = GRULanguageModel(ModelConfig(architecture="gru", **TINY))
    fresh.load_state_dict(torch.load(tmp_path / "gru.pt", weights_only=True))
    x = torch.randint(0, 300, (2, 16))
    assert torch.equal(model(x)[0], fresh(x)[0])


def test_broken_checkpoints_give_clear_errors(tmp_path: Path, shards: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        load_model(tmp_path / "missing")
    out, _ = _checkpoint(tmp_path, shards)
    (out / "model.safetensors").write_bytes(b"garbage, not safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors: corrupt or incompatible"):
        load_model(out)
    (out / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        load_model(out)
    other = build_model(ModelConfig(**{**TINY, "n_embd": 64}))
    safetensors.torch.save_model(other, str(out / "model.safetensors"))
    # Told from the header, before the model is allocated: which tensors differ.
    with pytest.raises(CheckpointError, match="does not match model.safetensors .shapes"):
        load_model(out)
    (out / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        load_model(out)
    (out / "optimizer.safetensors").write_bytes(b"\x80\x04junk")
    with pytest.raises(CheckpointError, match="optimizer.safetensors: not a valid safetensors"):
        load_optimizer_state(out)
    (out / "optimizer.safetensors").unlink()  # a folder from before: the legacy file
    (out / "optimizer.pt").write_bytes(b"\x80\x04junk")
    with pytest.raises(CheckpointError, match="optimizer.pt: cannot be loaded safely"):
        load_optimizer_state(out)


class UniformModel(nn.Module):
    """Equal logits for every token: the loss per token is exactly ln(vocab)."""

    def __init__(self, vocab: int, block_size: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.config = ModelConfig(vocab_size=vocab, block_size=block_size)

    def forward(self, idx: torch.Tensor, targets=None):
        return torch.zeros(*idx.shape, self.vocab), None


def test_bits_per_byte_hand_checked() -> None:
    model = UniformModel(vocab=256, block_size=4)
    tokens = np.arange(11) % 256  # 10 predicted tokens, windows 4 + 4 + a tail of 2
    nats, count = sum_nats(model, tokens, block_size=4, batch_size=2)
    assert count == 10
    assert nats == pytest.approx(10 * math.log(256))
    # 10 tokens of 8 bits each spread over 10 bytes: exactly 8 bits per byte.
    assert bits_per_byte(nats, 10) == pytest.approx(8.0)
    assert bits_per_byte(nats, 20) == pytest.approx(4.0)


def test_text_bits_per_byte_counts_every_token_of_the_text(shards: Path) -> None:
    from llm_pipeline.tokens.bpe import load_tokenizer

    bpe = load_tokenizer(shards / "tokenizer.json")
    text = "the model reads text"
    n_tokens = len(bpe.encode(text, add_special_tokens=False).ids)
    bpb = text_bits_per_byte(UniformModel(300, 8), bpe, text, 0, 8)
    assert bpb == pytest.approx(n_tokens * math.log(300) / (math.log(2) * len(text)))


def test_unigram_baseline_hand_checked() -> None:
    train_tokens = np.array([0, 0, 0, 1], dtype=np.uint16)
    val_tokens = np.array([1, 0, 1], dtype=np.uint16)  # targets: 0 and 1
    # add-one smoothing over vocab 2: p(0) = 4/6, p(1) = 2/6
    expected = -(math.log(4 / 6) + math.log(2 / 6)) / (math.log(2) * 2)
    assert unigram_bits_per_byte(train_tokens, val_tokens, 2, 2) == pytest.approx(expected)


def test_generate_greedy_is_deterministic_and_stops() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY))
    prompt = torch.tensor([[1, 2, 3]])
    first = generate(model, prompt, 10, temperature=0)
    assert torch.equal(first, generate(model, prompt, 10, temperature=0))
    assert first.shape == (1, 13)
    stop = int(first[0, 3])
    stopped = generate(model, prompt, 10, temperature=0, stop_token=stop)
    assert stopped.shape == (1, 4)
    long_prompt = torch.randint(0, 300, (1, 50))  # longer than block_size: cropped, no error
    assert generate(model, long_prompt, 2, top_k=5).shape == (1, 52)
