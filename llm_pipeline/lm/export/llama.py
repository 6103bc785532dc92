"""What both exports share: which checkpoints are a Llama, and how our names map onto its own.

A GPT with `mlp="swiglu"`, rotary positions, RMSNorm, no biases and tied embeddings *is* a
`LlamaForCausalLM` with `tie_word_embeddings: true`, tensor for tensor:

- rotary embeddings in the half-split convention (`apply_rotary`, transformers' `rotate_half`),
  same inverse frequencies `base ** (-2i / head_dim)`;
- RMSNorm with a weight, eps applied inside the square root: torch's `nn.RMSNorm(eps=None)`
  uses the input dtype's machine epsilon, which at fp32 inference is `RMS_NORM_EPS`;
- attention scaled by 1/sqrt(head_dim), causal, one key/value head per query head;
- the final norm before the tied output projection.

Nothing here imports transformers or gguf: the mapping is plain data and tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from llm_pipeline.errors import PipelineInputError
from llm_pipeline.lm.model.networks import swiglu_hidden_size
from llm_pipeline.lm.settings import ModelConfig
from llm_pipeline.lm.store.checkpoint import (
    WEIGHTS_FILE,
    load_model,
    read_config,
    read_tokenizer_json,
)
from llm_pipeline.paths import validate_corpus_name
from llm_pipeline.safe_open import is_regular_file
from llm_pipeline.tokens.bpe import TOKENIZER_FILE

# What nn.RMSNorm(eps=None) adds to the mean square at fp32, where exports are computed.
RMS_NORM_EPS = float(torch.finfo(torch.float32).eps)


class ExportError(PipelineInputError):
    """A run that cannot be exported (wrong architecture, missing files, output in the way)."""


@dataclass
class ExportSource:
    """One checkpoint folder read for export: its settings, weights and tokenizer (the JSON text
    read once and checked against the sha256 the checkpoint recorded: writers use this text,
    never the file again)."""

    run_dir: Path
    config: dict
    model_config: ModelConfig
    state: dict[str, torch.Tensor]
    tokenizer_json: str
    eot_id: int

    @property
    def corpus(self) -> str:
        data = self.config.get("data") or {}
        summary = self.config.get("summary") or {}
        # It names the GGUF file, so it is checked like every corpus name used in a path.
        name = data.get("corpus") or summary.get("corpus") or self.run_dir.parent.name
        return validate_corpus_name(str(name))

    @property
    def run_id(self) -> str:
        return str((self.config.get("summary") or {}).get("run_id") or self.run_dir.name)


def check_exportable(model_config: ModelConfig, where: Path) -> None:
    """Raise ExportError unless the model maps exactly onto Llama."""
    retrain = (
        "retrain with trained_model config mlp: swiglu (and the defaults position: rope, "
        "norm: rms, bias: false)"
    )
    if model_config.architecture != "gpt":
        raise ExportError(
            f"{where}: a {model_config.architecture} model cannot be exported; export needs a "
            f"gpt with mlp: swiglu, {retrain}"
        )
    wrong = {
        "mlp": (model_config.mlp, "swiglu"),
        "position": (model_config.position, "rope"),
        "norm": (model_config.norm, "rms"),
        "bias": (model_config.bias, False),
    }
    for name, (have, need) in wrong.items():
        if have != need:
            raise ExportError(
                f"{where}: export needs mlp: swiglu, position: rope, norm: rms, bias: false "
                f"(a Llama), but this model has {name}: {str(have).lower()}; {retrain}"
            )


def read_source(run_dir: Path) -> ExportSource:
    """Load a checkpoint folder for export, refusing what is missing or not a Llama."""
    run_dir = Path(run_dir)
    checkpoint = read_config(run_dir)  # typed: refuses a malformed or too-new config.json
    try:
        model_config = checkpoint.model_config()
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{run_dir / 'config.json'}: invalid model settings ({exc})") from None
    check_exportable(model_config, run_dir)
    for name in (WEIGHTS_FILE, TOKENIZER_FILE):
        if not is_regular_file(run_dir / name):  # a link is not followed
            raise ExportError(
                f"{run_dir / name}: missing or not a regular file (incomplete checkpoint)"
            )
    eot_id = checkpoint.require_tokenizer(run_dir / "config.json").eot_id
    tokenizer_json = read_tokenizer_json(run_dir, checkpoint)  # refuses one swapped in since
    # The model card reads lineage and figures from the checkpoint's JSON form.
    config = checkpoint.to_dict()
    model = load_model(run_dir)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    return ExportSource(run_dir, config, model_config, state, tokenizer_json, eot_id)


def llama_tensors(source: ExportSource) -> dict[str, torch.Tensor]:
    """Our weights under transformers' Llama names (fp32; no lm_head: it is tied)."""
    state, n_embd = source.state, source.model_config.n_embd
    out = {"model.embed_tokens.weight": state["wte.weight"]}
    for i in range(source.model_config.n_layer):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        q, k, v = state[ours + "attn.qkv.weight"].split(n_embd, dim=0)
        out.update(
            {
                theirs + "input_layernorm.weight": state[ours + "norm_attn.weight"],
                theirs + "self_attn.q_proj.weight": q,
                theirs + "self_attn.k_proj.weight": k,
                theirs + "self_attn.v_proj.weight": v,
                theirs + "self_attn.o_proj.weight": state[ours + "attn.proj.weight"],
                theirs + "post_attention_layernorm.weight": state[ours + "norm_mlp.weight"],
                theirs + "mlp.gate_proj.weight": state[ours + "mlp.gate.weight"],
                theirs + "mlp.up_proj.weight": state[ours + "mlp.up.weight"],
                theirs + "mlp.down_proj.weight": state[ours + "mlp.proj.weight"],
            }
        )
    out["model.norm.weight"] = state["norm_f.weight"]
    return {name: t.contiguous() for name, t in out.items()}


def llama_config(source: ExportSource, dtype: str) -> dict:
    """transformers' `config.json` for the model: LlamaConfig fields, nothing left to defaults
    that differ from ours."""
    m = source.model_config
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": m.vocab_size,
        "hidden_size": m.n_embd,
        "intermediate_size": swiglu_hidden_size(m.n_embd),
        "num_hidden_layers": m.n_layer,
        "num_attention_heads": m.n_head,
        "num_key_value_heads": m.n_head,
        "head_dim": m.n_embd // m.n_head,
        "hidden_act": "silu",
        "max_position_embeddings": m.block_size,
        "rms_norm_eps": RMS_NORM_EPS,
        # `rope_theta` for readers of the older layout (vLLM, llama.cpp's converter),
        # `rope_parameters` for transformers 5.
        "rope_theta": m.rope_base,
        "rope_parameters": {"rope_type": "default", "rope_theta": m.rope_base},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": source.eot_id,
        "eos_token_id": source.eot_id,
        "torch_dtype": dtype,
    }
