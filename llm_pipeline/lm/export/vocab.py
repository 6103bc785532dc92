"""The run's byte-level BPE, described for transformers and for llama.cpp.

Two behaviours of ours must survive the trip, because the model was trained with them:

- every document starts after `<|endoftext|>` (the shards put one between documents, and
  `lm/model/sampling.py` puts one before a prompt), so the exports declare it as BOS and ask for it
  to be added: `tokenizer("text").input_ids == [eot, *ours.encode("text")]`, and with
  `add_special_tokens=False` the ids are exactly ours;
- the *text* "<|endoftext|>" inside a document is ordinary bytes, never the special id (see
  `tokens/bpe.load_tokenizer`), so a document cannot forge a boundary: transformers gets
  `split_special_tokens: true`, which is the same switch (`encode_special_tokens`).
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer, processors

from llm_pipeline.tokens.bpe import END_OF_TEXT

# llama.cpp's token types (gguf.TokenType), kept here so this module needs no gguf import.
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_UNUSED = 1, 3, 5


def hf_tokenizer_json(tokenizer_json: str, eot_id: int) -> str:
    """Our `tokenizer.json` (its checked text) with a post-processor that puts
    `<|endoftext|>` first."""
    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{END_OF_TEXT}:0 $A:0",
        pair=f"{END_OF_TEXT}:0 $A:0 {END_OF_TEXT}:1 $B:1",
        special_tokens=[(END_OF_TEXT, eot_id)],
    )
    return tokenizer.to_str(pretty=True)


def hf_tokenizer_config(block_size: int) -> dict:
    """`tokenizer_config.json`: the fast tokenizer class, its special tokens and our switches."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": END_OF_TEXT,
        "eos_token": END_OF_TEXT,
        "unk_token": None,
        "pad_token": None,
        "add_bos_token": True,
        "add_eos_token": False,
        "add_prefix_space": False,
        "split_special_tokens": True,
        "clean_up_tokenization_spaces": False,
        "model_max_length": block_size,
    }


def special_tokens_map() -> dict:
    return {"bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT}


def gguf_vocab(tokenizer_json: str, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """Tokens (in id order, byte-level spelling), llama.cpp token types and BPE merges.

    Ids the tokenizer does not use (a model vocabulary larger than the tokenizer's) become
    `[PAD<id>]` tokens of type unused, as llama.cpp's converter writes them.
    """
    data = json.loads(tokenizer_json)
    by_id = {token_id: token for token, token_id in data["model"]["vocab"].items()}
    special = set()
    for added in data.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        if added.get("special", False):
            special.add(added["id"])
    tokens, types = [], []
    for token_id in range(vocab_size):
        if token_id in by_id:
            tokens.append(by_id[token_id])
            types.append(TOKEN_CONTROL if token_id in special else TOKEN_NORMAL)
        else:
            tokens.append(f"[PAD{token_id}]")
            types.append(TOKEN_UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"].get("merges", [])]
    return tokens, types, merges
