"""A Hugging Face model folder that `AutoModelForCausalLM.from_pretrained(DIR)` loads offline.

    config.json              LlamaConfig fields, architectures ["LlamaForCausalLM"]
    model.safetensors        transformers' tensor names; tied, so no lm_head.weight
    generation_config.json   bos/eos = <|endoftext|>
    tokenizer.json           the run's BPE, with a post-processor adding <|endoftext|> first
    tokenizer_config.json    PreTrainedTokenizerFast, special tokens, model_max_length
    special_tokens_map.json
    README.md                model card: data lineage, metrics, training, intended use

The folder is written whole into a temporary sibling and renamed into place (`atomic_dir`).
Our rotary convention is transformers' own (half-split), so q/k weights are stored as trained.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import safetensors.torch
import torch

from llm_pipeline.atomic import FILE_MODE, atomic_dir
from llm_pipeline.lm.export.card import cleaning_stats, model_card
from llm_pipeline.lm.export.formats import EXPORT_FORMATS
from llm_pipeline.lm.export.llama import ExportError, llama_config, llama_tensors, read_source
from llm_pipeline.lm.export.vocab import (
    hf_tokenizer_config,
    hf_tokenizer_json,
    special_tokens_map,
)
from llm_pipeline.lm.store.history import read_promotion

_TORCH_DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
HF_DTYPES = {name: _TORCH_DTYPES[name] for name in EXPORT_FORMATS["hf"].dtypes}
HF_FILES = (
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "README.md",
)


def check_output(out: Path, force: bool, marker: str | None = None) -> None:
    """Refuse to replace an existing output unless asked to.

    With `marker`, `out` is a folder that replacing removes whole: even with `force` it must be
    empty or hold `marker` (an earlier export), so `--out .` never wipes a working folder.
    """
    if out.is_symlink():
        raise ExportError(f"{out}: is a symlink; refusing to write through it")
    if not out.exists():
        return
    if not force:
        raise ExportError(f"{out}: already exists; pass --force (force=True) to replace it")
    if marker is not None:
        if not out.is_dir():
            raise ExportError(f"{out}: exists and is not a folder; refusing to replace it")
        if any(out.iterdir()) and not (out / marker).is_file():
            raise ExportError(
                f"{out}: not an earlier export (no {marker}); refusing to replace its contents"
            )


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def export_hf(
    run_dir: Path,
    out_dir: Path,
    dtype: str = "f32",
    force: bool = False,
    data_root: Path | None = None,
) -> Path:
    """Write the run's model as a transformers Llama folder at `out_dir`; return `out_dir`.

    `dtype` is f32 (default: logits equal ours), f16 or bf16. `data_root` locates the cleaned
    corpus for the card's cleaning funnel (default: the pipeline's data root).
    """
    if dtype not in HF_DTYPES:
        raise ExportError(f"dtype must be one of {sorted(HF_DTYPES)} for hf, not {dtype!r}")
    out_dir = Path(out_dir)
    source = read_source(run_dir)
    check_output(out_dir, force, marker="config.json")
    torch_dtype = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[dtype]
    tensors = {k: v.to(HF_DTYPES[dtype]).contiguous() for k, v in llama_tensors(source).items()}
    card = model_card(
        source,
        "a Hugging Face transformers folder",
        cleaning_stats(source.corpus, data_root),
        read_promotion(run_dir).get("eval_files"),  # the report's scores, if it ran
    )
    # Written once per export: its lock file would otherwise stay behind in the user's folder.
    with atomic_dir(out_dir, remove_lock=True) as tmp:
        _write_json(tmp / "config.json", llama_config(source, torch_dtype))
        weights = tmp / "model.safetensors"
        safetensors.torch.save_file(tensors, str(weights), metadata={"format": "pt"})
        os.chmod(weights, FILE_MODE)  # safetensors creates it private (0600)
        _write_json(
            tmp / "generation_config.json",
            {
                "bos_token_id": source.eot_id,
                "eos_token_id": source.eot_id,
                # No max_length: transformers warns when a caller's max_new_tokens meets it; the
                # context length is config.json's max_position_embeddings.
            },
        )
        (tmp / "tokenizer.json").write_text(hf_tokenizer_json(source.tokenizer_json, source.eot_id))
        _write_json(
            tmp / "tokenizer_config.json", hf_tokenizer_config(source.model_config.block_size)
        )
        _write_json(tmp / "special_tokens_map.json", special_tokens_map())
        (tmp / "README.md").write_text(card)
    return out_dir
