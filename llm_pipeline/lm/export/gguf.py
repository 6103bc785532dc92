"""`DIR/<corpus>.gguf` for llama.cpp and Ollama, written with llama.cpp's own writer (`gguf`).

Architecture `llama`: the hyperparameters under `llama.*`, the byte-level BPE in the metadata
(`tokenizer.ggml.model = "gpt2"`, tokens in their byte-level spelling, token types, merges,
`<|endoftext|>` as BOS and EOS, BOS added as our documents start), and the tensors under
llama.cpp's names (`token_embd`, `blk.N.attn_q`, ..., `output_norm`; tied, so no `output`).

llama.cpp rotates *adjacent* pairs of each head's dimensions, while we (and transformers)
rotate the first half against the second. Its converter therefore permutes q and k rows of a
Hugging Face checkpoint (`LlamaModel.permute` in convert_hf_to_gguf.py): within each head,
row `j` of the first half goes to `2j` and row `j` of the second half to `2j + 1`. We do the
same, from the same half-split layout; transformers' GGUF loader undoes it when reading back.

Norm weights stay float32 (llama.cpp wants them so); matrices are f16, bf16 or q8_0. A matrix
whose rows do not divide into q8_0's 32-wide blocks is written f16, as the converter does.
The file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from llm_pipeline.atomic import atomic_path
from llm_pipeline.lm.export.formats import EXPORT_FORMATS
from llm_pipeline.lm.export.hf import check_output
from llm_pipeline.lm.export.llama import (
    RMS_NORM_EPS,
    ExportError,
    ExportSource,
    llama_tensors,
    read_source,
)
from llm_pipeline.lm.export.vocab import gguf_vocab
from llm_pipeline.lm.model.networks import swiglu_hidden_size

# The GPT-2 split regex, which our ByteLevel(use_regex=True) pre-tokenizer applies.
GGUF_DTYPES = EXPORT_FORMATS["gguf"].dtypes
PRE_TOKENIZER = "gpt-2"

_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
}
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf_name: str) -> str:
    """llama.cpp's name for a transformers Llama tensor name."""
    if hf_name in _NAMES:
        return _NAMES[hf_name]
    _, _, layer, rest = hf_name.split(".", 3)  # model.layers.N.rest
    return f"blk.{layer}.{_LAYER_NAMES[rest]}"


def permute_for_gguf(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """Half-split rotary rows → llama.cpp's interleaved pairs, head by head."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
        .transpose(1, 2)
        .reshape(weight.shape)
    )


def gguf_tensors(source: ExportSource) -> dict[str, torch.Tensor]:
    """fp32 tensors under llama.cpp's names, q/k permuted."""
    n_head = source.model_config.n_head
    out = {}
    for name, tensor in llama_tensors(source).items():
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            tensor = permute_for_gguf(tensor, n_head)
        out[gguf_name(name)] = tensor.contiguous()
    return out


def _encode(gguf, array: np.ndarray, dtype: str) -> tuple[np.ndarray, object]:
    """(data, raw_dtype) for GGUFWriter.add_tensor."""
    kind = gguf.GGMLQuantizationType
    if array.ndim == 1:
        return array.astype(np.float32), None
    if dtype == "q8_0" and array.shape[-1] % gguf.GGML_QUANT_SIZES[kind.Q8_0][0] == 0:
        return gguf.quants.quantize(array, kind.Q8_0), kind.Q8_0
    if dtype == "bf16":
        return gguf.quants.quantize(array, kind.BF16), kind.BF16
    return array.astype(np.float16), None


def export_gguf(
    run_dir: Path,
    out_dir: Path,
    dtype: str = "f16",
    force: bool = False,
    data_root: Path | None = None,
) -> Path:
    """Write `out_dir/<corpus>.gguf` (f16, bf16 or q8_0) for the run; return the file's path.

    `force` replaces an existing file of that name; other files in `out_dir` are left alone.
    `data_root` is unused (a GGUF file carries no model card): it is there so every format's
    writer has the one signature `formats.ExportFormat.write` calls.
    """
    try:
        import gguf
    except ImportError:
        raise ExportError(
            "GGUF export needs the gguf package: pip install 'llm-pipeline[export]'"
        ) from None
    if dtype not in GGUF_DTYPES:
        raise ExportError(f"dtype must be one of {list(GGUF_DTYPES)} for gguf, not {dtype!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a folder")
    source = read_source(run_dir)
    target = out_dir / f"{source.corpus}.gguf"
    if target.is_dir():
        raise ExportError(f"{target}: is a folder; refusing to replace it with the GGUF file")
    check_output(target, force)
    m = source.model_config
    file_type = {
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[dtype]
    tokens, types, merges = gguf_vocab(source.tokenizer_json, m.vocab_size)
    with atomic_path(target) as tmp:
        writer = gguf.GGUFWriter(tmp, "llama")
        writer.add_name(f"{source.corpus}-{source.run_id}")
        writer.add_context_length(m.block_size)
        writer.add_embedding_length(m.n_embd)
        writer.add_block_count(m.n_layer)
        writer.add_feed_forward_length(swiglu_hidden_size(m.n_embd))
        writer.add_head_count(m.n_head)
        writer.add_head_count_kv(m.n_head)
        writer.add_rope_freq_base(m.rope_base)
        writer.add_layer_norm_rms_eps(RMS_NORM_EPS)
        writer.add_rope_dimension_count(m.n_embd // m.n_head)
        writer.add_vocab_size(m.vocab_size)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(PRE_TOKENIZER)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        writer.add_bos_token_id(source.eot_id)
        writer.add_eos_token_id(source.eot_id)
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)
        for name, tensor in gguf_tensors(source).items():
            data, raw_dtype = _encode(gguf, tensor.numpy(), dtype)
            writer.add_tensor(name, data, raw_dtype=raw_dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return target
