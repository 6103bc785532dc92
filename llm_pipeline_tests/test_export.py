"""Exports checked by the real readers: transformers (folder and GGUF loader) and gguf-py.

One tiny swiglu GPT with a small trained BPE, its weights scrambled well away from their
initialisation so that a wrong tensor name, layout or rotary permutation shows in the logits.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

from llm_pipeline.cli import main
from llm_pipeline.lm.export import ExportError, export_gguf, export_hf
from llm_pipeline.lm.model.networks import build_model, generate, swiglu_hidden_size
from llm_pipeline.lm.model.sampling import load_run
from llm_pipeline.lm.settings import ModelConfig
from llm_pipeline.lm.store.checkpoint import save_checkpoint
from llm_pipeline.lm.store.folders import CURRENT, write_pointer
from llm_pipeline.lm.store.history import record_promotion
from llm_pipeline.tokens.bpe import (
    END_OF_TEXT,
    TOKENIZER_FILE,
    end_of_text_id,
    file_sha256,
    save_tokenizer,
    train_bpe,
)
from llm_pipeline_tests.conftest import make_document

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

CORPUS = "tiny"
RUN_ID = "run-swiglu"
PROMPTS = [
    "the model reads text",
    "River mountain garden letter window quiet bright simple number",
    "Checks every stage so that",
    f"a document that mentions {END_OF_TEXT} as text",
]


def _save_run(
    models: Path, run_id: str, config: ModelConfig, tokenizer_path: Path, seed: int = 0
) -> Path:
    torch.manual_seed(seed)
    model = build_model(config)
    with torch.no_grad():  # far from init: every mapping mistake changes the logits
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(1.0 + 0.2 * torch.randn_like(param))
            else:
                param.normal_(0.0, 0.1)
    eot = end_of_text_id(load_run_tokenizer(tokenizer_path))
    out = models / CORPUS / run_id
    save_checkpoint(
        out,
        model,
        torch.optim.AdamW(model.parameters()),
        {
            "model": config.to_dict(),
            "training": {"learning_rate": 2e-3, "batch_size": 8, "seed": 1337},
            "tokenizer": {
                "sha256": file_sha256(tokenizer_path),
                "eot_id": eot,
                "file": TOKENIZER_FILE,
            },
            "data": {"corpus": CORPUS, "raw_fingerprint": "fingerprint-123", "shards": {}},
            "summary": {
                "run_id": run_id,
                "corpus": CORPUS,
                "steps": 10,
                "tokens_seen": 1280,
                "training_seconds": 1.0,
                "tokens_per_s": 1280.0,
                "stop_reason": "max_steps",
                "parameters": sum(p.numel() for p in model.parameters()),
                "val_loss": 2.0,
                "val_bits_per_byte": 2.5,
                "unigram_bits_per_byte": 3.0,
            },
        },
        [],
        tokenizer_path,
    )
    return out


def load_run_tokenizer(path: Path):
    from llm_pipeline.tokens.bpe import load_tokenizer

    return load_tokenizer(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    rng = random.Random(7)
    texts = [make_document(rng, 120) for _ in range(60)]
    tokenizer_path = root / "tokenizer.json"
    save_tokenizer(train_bpe([texts], vocab_size=320), tokenizer_path)
    vocab = load_run_tokenizer(tokenizer_path).get_vocab_size()
    shape = dict(vocab_size=vocab, block_size=64, n_layer=2, n_head=4, n_embd=64)
    models = root / "models"
    swiglu = _save_run(models, RUN_ID, ModelConfig(mlp="swiglu", **shape), tokenizer_path)
    record_promotion(swiglu, {"promoted": True, "eval_files": {"heldout.txt": 2.1234}})
    return {
        "models": models,
        "swiglu": swiglu,
        "gelu": _save_run(models, "run-gelu", ModelConfig(**shape), tokenizer_path),
        "gru": _save_run(
            models, "run-gru", ModelConfig(architecture="gru", **shape), tokenizer_path
        ),
    }


@pytest.fixture(scope="module")
def hf_dir(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_hf(runs["swiglu"], tmp_path_factory.mktemp("hf") / "model")


@pytest.fixture(scope="module")
def ours(runs: dict[str, Path]):
    return load_run(runs["swiglu"])


def _ids(ours, prompt: str) -> list[int]:
    return [ours.eot_id, *ours.tokenizer.encode(prompt, add_special_tokens=False).ids]


def test_swiglu_hidden_size_is_the_nearest_multiple_of_64() -> None:
    assert [swiglu_hidden_size(n) for n in (64, 128, 384, 768)] == [192, 320, 1024, 2048]
    assert swiglu_hidden_size(8) == 64


def test_hf_folder_has_llama_files(hf_dir: Path) -> None:
    import json

    config = json.loads((hf_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    # Issue 26: no max_length, which transformers warns about next to a caller's max_new_tokens.
    assert "max_length" not in json.loads((hf_dir / "generation_config.json").read_text())
    assert config["tie_word_embeddings"] is True
    assert config["intermediate_size"] == swiglu_hidden_size(64)
    card = (hf_dir / "README.md").read_text()
    assert "fingerprint-123" in card and "Intended use" in card and "2.5000" in card
    assert "eval file `heldout.txt`: 2.1234 bits per byte" in card  # the report's scores
    from safetensors import safe_open

    with safe_open(str(hf_dir / "model.safetensors"), "pt") as fh:
        names = set(fh.keys())
    assert "model.layers.1.mlp.gate_proj.weight" in names and "lm_head.weight" not in names


def test_transformers_logits_and_greedy_generation_equal_ours(hf_dir: Path, ours) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    assert type(model).__name__ == "LlamaForCausalLM"
    for prompt in PROMPTS:
        ids = torch.tensor([_ids(ours, prompt)])
        with torch.no_grad():
            expected, _ = ours.model(ids)
            got = model(ids).logits
        assert torch.allclose(got, expected, atol=1e-4), (prompt, (got - expected).abs().max())
    ids = torch.tensor([_ids(ours, PROMPTS[0])])
    mine = generate(ours.model, ids, 40, temperature=0)
    theirs = model.generate(
        ids, max_new_tokens=40, min_new_tokens=40, do_sample=False, eos_token_id=None
    )
    assert theirs.tolist() == mine.tolist()


def test_transformers_tokenizer_gives_our_ids(hf_dir: Path, ours) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    assert tokenizer.eos_token == END_OF_TEXT and tokenizer.eos_token_id == ours.eot_id
    for prompt in PROMPTS:
        plain = ours.tokenizer.encode(prompt, add_special_tokens=False).ids
        assert tokenizer(prompt, add_special_tokens=False)["input_ids"] == plain
        assert tokenizer(prompt)["input_ids"] == [ours.eot_id, *plain]  # documents start so
        assert tokenizer.decode(plain) == ours.tokenizer.decode(plain)
    # The text "<|endoftext|>" in a document is ordinary bytes for both, never the special id.
    literal = tokenizer(PROMPTS[-1], add_special_tokens=False)["input_ids"]
    assert ours.eot_id not in literal


def test_transformers_pipeline_generates_text(hf_dir: Path) -> None:
    generator = transformers.pipeline("text-generation", model=str(hf_dir), device="cpu")
    out = generator("the model", max_new_tokens=10, do_sample=False)
    assert isinstance(out[0]["generated_text"], str) and len(out[0]["generated_text"]) > 9


@pytest.mark.parametrize("dtype", ["f16", "q8_0", "bf16"])
def test_gguf_reads_back_and_loads_in_transformers(
    runs: dict[str, Path], ours, tmp_path: Path, dtype: str
) -> None:
    path = export_gguf(runs["swiglu"], tmp_path, dtype=dtype)
    assert path == tmp_path / f"{CORPUS}.gguf"
    reader = gguf.GGUFReader(path)
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"
    names = {t.name for t in reader.tensors}
    expected = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{part}.weight"
        for i in range(2)
        for part in (
            "attn_norm attn_q attn_k attn_v attn_output ffn_norm ffn_gate ffn_up ffn_down".split()
        )
    }
    assert names == expected
    if dtype == "bf16":
        return  # read back above; transformers' GGUF loader is checked on f16 and q8_0
    model = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file=path.name, dtype=torch.float32
    ).eval()
    # f16 rounds each weight by ~5e-4 relative; q8_0 by up to 1/254 of its 32-block maximum.
    tolerance = 1e-2 if dtype == "f16" else 0.25
    for prompt in PROMPTS:
        ids = torch.tensor([_ids(ours, prompt)])
        with torch.no_grad():
            expected_logits, _ = ours.model(ids)
            got = model(ids).logits
        assert (got - expected_logits).abs().max() < tolerance, prompt
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    for prompt in PROMPTS[:3]:
        plain = ours.tokenizer.encode(prompt, add_special_tokens=False).ids
        assert tokenizer(prompt, add_special_tokens=False)["input_ids"] == plain
        assert tokenizer(prompt)["input_ids"] == [ours.eot_id, *plain]
        assert tokenizer.decode(plain) == prompt
    # A GGUF cannot say "split special tokens": there the text "<|endoftext|>" is the token.
    assert tokenizer(PROMPTS[-1], add_special_tokens=False)["input_ids"].count(ours.eot_id) == 1


def test_export_refuses_gelu_and_gru_models(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="export needs mlp: swiglu.*retrain"):
        export_hf(runs["gelu"], tmp_path / "a")
    with pytest.raises(ExportError, match="gru model cannot be exported"):
        export_gguf(runs["gru"], tmp_path / "b")
    assert not (tmp_path / "a").exists()


def test_export_never_replaces_a_folder_that_is_not_an_export(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an earlier export"):
        export_hf(runs["swiglu"], tmp_path, force=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    first = export_hf(runs["swiglu"], tmp_path / "hf")
    assert export_hf(runs["swiglu"], first, dtype="bf16", force=True) == first
    assert '"torch_dtype": "bfloat16"' in (first / "config.json").read_text()
    # Issue 26: an export leaves no lock file behind in the user's folder.
    assert not list(tmp_path.glob(".*.lock"))


def test_checkpoints_saved_before_the_mlp_setting_load_as_gelu(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    import json
    import shutil

    old = tmp_path / "old-run"
    shutil.copytree(runs["gelu"], old)
    config = json.loads((old / "config.json").read_text())
    del config["model"]["mlp"]
    (old / "config.json").write_text(json.dumps(config))
    assert ModelConfig.from_dict(config["model"]).mlp == "gelu"
    ids = torch.tensor([[0, 5, 9, 3, 7]])
    with torch.no_grad():
        then, _ = load_run(old).model(ids)
        now, _ = load_run(runs["gelu"]).model(ids)
    assert torch.equal(then, now)


def _cli(monkeypatch: pytest.MonkeyPatch, models: Path, *argv: str) -> int:
    monkeypatch.setenv("LLM_PIPELINE_MODELS_DIR", str(models))
    return main(["export", "--corpus", CORPUS, *argv])


def test_cli_exports_the_champion_and_refuses_clearly(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    models = runs["models"]
    write_pointer(CORPUS, CURRENT, RUN_ID, models)
    out = tmp_path / "gguf"
    assert _cli(monkeypatch, models, "--format", "gguf", "--out", str(out)) == 0
    assert (out / f"{CORPUS}.gguf").is_file()
    cases = {
        "no-such-run: no such checkpoint": ["--run", "no-such-run", "--format", "hf"],
        "export needs mlp: swiglu": ["--run", "run-gelu", "--format", "hf"],
        "gru model cannot be exported": ["--run", "run-gru", "--format", "gguf"],
        "already exists; pass --force": ["--format", "gguf"],
    }
    for message, argv in cases.items():
        capsys.readouterr()
        assert _cli(monkeypatch, models, *argv, "--out", str(out)) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert _cli(monkeypatch, models, "--format", "gguf", "--out", str(out), "--force") == 0
    (models / CORPUS / "run-broken").mkdir()
    (models / CORPUS / "run-broken" / "config.json").write_text(
        (runs["swiglu"] / "config.json").read_text()
    )
    capsys.readouterr()
    assert (
        _cli(
            monkeypatch,
            models,
            "--run",
            "run-broken",
            "--format",
            "hf",
            "--out",
            str(tmp_path / "x"),
        )
        == 2
    )
    assert "model.safetensors: missing" in capsys.readouterr().err


def test_exported_model_asset_writes_both_formats_beside_the_checkpoint(
    runs: dict[str, Path], instance, data_root: Path
) -> None:
    from dagster import materialize

    from llm_pipeline.assets.export import exported_model
    from llm_pipeline.definitions import defs
    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
    from llm_pipeline.resources import StorageResource

    models = runs["models"]
    write_pointer(CORPUS, "latest", RUN_ID, models)
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, [CORPUS])
    result = materialize(
        [exported_model],
        partition_key=CORPUS,
        instance=instance,
        resources={"storage": StorageResource(models_dir=str(models))},
        run_config={"ops": {"exported_model": {"config": {"gguf_dtype": "q8_0"}}}},
    )
    assert result.success
    metadata = result.asset_materializations_for_node("exported_model")[0].metadata
    hf = Path(metadata["hf_path"].value)
    assert hf == runs["swiglu"] / "export" / "hf" and (hf / "model.safetensors").is_file()
    assert Path(metadata["gguf_path"].value) == runs["swiglu"] / "export" / "gguf" / "tiny.gguf"
    # Asked for on its own: the default (gelu) pipeline never fails on an export step.
    pipeline_assets = defs.resolve_job_def("corpus_pipeline_job").asset_layer.executable_asset_keys
    assert "exported_model" not in {key.path[-1] for key in pipeline_assets}
    export_job = defs.resolve_job_def("corpus_export_job").asset_layer.executable_asset_keys
    assert {key.path[-1] for key in export_job} == {"exported_model"}


def test_schedule_does_not_retrain_a_model_saved_before_the_mlp_setting(tmp_path: Path) -> None:
    import json

    from llm_pipeline.automation.schedules import retrain_decision
    from llm_pipeline.lm.settings import TrainConfig, TrainedModelSettings
    from llm_pipeline.text.read.readers import fingerprint_files

    raw = tmp_path / "data" / "raw" / CORPUS
    raw.mkdir(parents=True)
    (raw / "a.txt").write_text("some text for the corpus\n")
    settings = TrainedModelSettings.resolve({"vocab_size": 300})
    model = ModelConfig.fields_of(settings)
    del model["mlp"]  # as every config.json written before the setting existed
    run = tmp_path / "models" / CORPUS / "old-run"
    run.mkdir(parents=True)
    (run / "config.json").write_text(
        json.dumps(
            {
                "model": model,
                "training": TrainConfig.fields_of(settings),
                "data": {"corpus": CORPUS, "raw_fingerprint": fingerprint_files(raw)},
            }
        )
    )
    write_pointer(CORPUS, "latest", "old-run", tmp_path / "models")
    decision = retrain_decision(CORPUS, {}, tmp_path / "data", tmp_path / "models")
    assert not decision.retrain, decision.reason


def test_a_champion_whose_settings_this_version_refuses_retrains_only_its_corpus(
    tmp_path: Path,
) -> None:
    """A saved size above today's bounds is a reason to retrain that corpus, not an error that
    fails the schedule's whole tick."""
    import json

    from llm_pipeline.automation.schedules import retrain_decision
    from llm_pipeline.lm.settings import TrainConfig, TrainedModelSettings
    from llm_pipeline.text.read.readers import fingerprint_files

    raw = tmp_path / "data" / "raw" / CORPUS
    raw.mkdir(parents=True)
    (raw / "a.txt").write_text("some text for the corpus\n")
    settings = TrainedModelSettings.resolve({"vocab_size": 300})
    model = {**ModelConfig.fields_of(settings), "n_layer": 5000}
    run = tmp_path / "models" / CORPUS / "huge-run"
    run.mkdir(parents=True)
    data = {"corpus": CORPUS, "raw_fingerprint": fingerprint_files(raw)}
    config = {"model": model, "training": TrainConfig.fields_of(settings), "data": data}
    (run / "config.json").write_text(json.dumps(config))
    write_pointer(CORPUS, "current", "huge-run", tmp_path / "models")
    decision = retrain_decision(CORPUS, {}, tmp_path / "data", tmp_path / "models")
    assert decision.retrain and "refused by this version" in decision.reason, decision.reason
    assert "n_layer" in decision.reason


def test_schedule_compares_resolved_settings_not_raw_config_files() -> None:
    """Issue 23: both sides resolved by the same settings. A key added in an upgrade with a
    default that keeps old behaviour retrains nothing; a changed default retrains and says so;
    a setting the run changes is named as such."""
    from llm_pipeline.automation.schedules import settings_change
    from llm_pipeline.lm.settings import TrainConfig, TrainedModelSettings

    settings = TrainedModelSettings.resolve({"vocab_size": 300})
    saved = {**ModelConfig.fields_of(settings), **TrainConfig.fields_of(settings)}
    assert settings_change(saved, {}, 300) is None
    older = dict(saved)
    del older["rope_base"], older["measure_mfu"]  # written before these keys existed
    assert settings_change(older, {}, 300) is None
    old_default = {**saved, "weight_decay": saved["weight_decay"] + 0.05}
    change = settings_change(old_default, {}, 300)
    assert change is not None and change.startswith("a default changed: weight_decay (")
    run_config = {"ops": {"trained_model": {"config": {"learning_rate": 0.01}}}}
    change = settings_change(old_default, run_config, 300)
    assert change is not None and change.startswith("learning_rate (")
    assert "; a default changed: weight_decay" in change


def test_exported_model_never_follows_a_planted_export_link(
    runs: dict[str, Path], instance, data_root: Path, tmp_path: Path
) -> None:
    """Issue 25, finding 4: `<run>/export -> elsewhere` (an earlier export there, so the
    replace-only-an-export check passes) must not have `elsewhere/hf` replaced wholesale."""
    from dagster import materialize

    from llm_pipeline.assets.export import exported_model
    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
    from llm_pipeline.resources import StorageResource

    models = runs["models"]
    shape = dict(vocab_size=320, block_size=64, n_layer=2, n_head=4, n_embd=64)
    tokenizer = runs["swiglu"] / TOKENIZER_FILE
    shape["vocab_size"] = load_run_tokenizer(tokenizer).get_vocab_size()
    run = _save_run(models, "run-linked", ModelConfig(mlp="swiglu", **shape), tokenizer)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "hf").mkdir(parents=True)
    (elsewhere / "hf" / "config.json").write_text("{}")
    (elsewhere / "hf" / "precious.txt").write_text("keep me")
    (run / "export").symlink_to(elsewhere, target_is_directory=True)
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, [CORPUS])
    result = materialize(
        [exported_model],
        partition_key=CORPUS,
        instance=instance,
        resources={"storage": StorageResource(models_dir=str(models))},
        run_config={"ops": {"exported_model": {"config": {"run": "run-linked"}}}},
        raise_on_error=False,
    )
    assert not result.success
    assert sorted(p.name for p in (elsewhere / "hf").iterdir()) == ["config.json", "precious.txt"]
    assert sorted(p.name for p in elsewhere.iterdir()) == ["hf"]
