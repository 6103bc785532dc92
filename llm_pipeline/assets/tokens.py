"""`tokenizer` and `token_shards`: a byte-level BPE and the corpus encoded with it."""

from pathlib import Path

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from llm_pipeline.assets._common import check_run_config, clear_errors
from llm_pipeline.assets._config import stage_config
from llm_pipeline.assets.cleaned import cleaned_corpus
from llm_pipeline.partitions import corpus_key, corpus_partitions
from llm_pipeline.resources import StorageResource
from llm_pipeline.tags import GROUP_DATA
from llm_pipeline.tokens.settings import (
    TOKEN_SHARDS,
    TOKENIZER,
)
from llm_pipeline.tokens.stages import build_tokenizer, encode_corpus

TokenizerConfig = stage_config(TOKENIZER)
TokenShardsConfig = stage_config(TOKEN_SHARDS)


def shards_metadata(meta: dict, folder: Path) -> dict:
    """The materialization's metadata: tokens, documents and bytes per side, from `meta.json`."""
    splits = meta["splits"]
    total_bytes = splits["train"]["bytes"] + splits["val"]["bytes"]
    total_tokens = splits["train"]["tokens"] + splits["val"]["tokens"]
    return {
        "dtype": meta["dtype"],
        "vocab_size": meta["vocab_size"],
        "train_tokens": splits["train"]["tokens"],
        "val_tokens": splits["val"]["tokens"],
        "train_documents": splits["train"]["documents"],
        "val_documents": splits["val"]["documents"],
        "train_bytes": splits["train"]["bytes"],
        "val_bytes": splits["val"]["bytes"],
        "bytes_per_token": round(total_bytes / max(total_tokens, 1), 3),
        "encode_seconds": meta["encode_seconds"],
        "path": MetadataValue.path(str(folder)),
    }


@asset(
    partitions_def=corpus_partitions,
    deps=[cleaned_corpus],
    group_name=GROUP_DATA,
    kinds={"json"},
    code_version="2",
)
@clear_errors
def tokenizer(
    context: AssetExecutionContext, config: TokenizerConfig, storage: StorageResource
) -> MaterializeResult:
    """A byte-level BPE (HF `tokenizers`) trained on the cleaned corpus's `train` rows only
    (validation text never shapes the vocabulary), streamed from Parquet.

    Saved as `data/tokens/<corpus>/tokenizer.json` with `<|endoftext|>` as a special token.
    The stage is `tokens.stages.build_tokenizer`.
    """
    check_run_config(context)
    corpus = corpus_key(context)
    settings = config.settings()
    built = build_tokenizer(
        storage.cleaned(corpus), storage.tokens(corpus), corpus, settings, emit=context.log.info
    )
    context.log.info(
        f"tokenizer: {built.vocab_size} tokens, {built.bytes_per_token:.2f} bytes/token"
    )
    return MaterializeResult(
        metadata={
            "vocab_size": built.vocab_size,
            "bytes_per_token": round(built.bytes_per_token, 3),
            "training_documents": built.training_documents,
            "sha256": built.sha256,
            "path": MetadataValue.path(str(built.path)),
        }
    )


@asset(
    partitions_def=corpus_partitions,
    deps=[tokenizer, cleaned_corpus],
    group_name=GROUP_DATA,
    kinds={"numpy"},
    code_version="2",
)
@clear_errors
def token_shards(
    context: AssetExecutionContext, config: TokenShardsConfig, storage: StorageResource
) -> MaterializeResult:
    """The cleaned corpus as token ids: `train.bin`, `val.bin` (flat uint16/uint32) + `meta.json`.

    The split follows `cleaned_corpus`'s `split` column (decided there once, on a key that
    survives cleaning changes); `meta.json` records the validation set's identity. The stage
    is `tokens.stages.encode_corpus`.
    """
    check_run_config(context)
    corpus = corpus_key(context)
    folder = storage.tokens(corpus)
    settings = config.settings()
    meta = encode_corpus(storage.cleaned(corpus), folder, corpus, settings, emit=context.log.info)
    splits = meta["splits"]
    context.log.info(
        f"token_shards: {splits['train']['tokens']} train / {splits['val']['tokens']} val tokens"
    )
    return MaterializeResult(metadata=shards_metadata(meta, folder))
