"""`tokenizer` and `token_shards`: a byte-level BPE and the corpus encoded with it."""

from pathlib import Path

from dagster import (
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from llm_pipeline.assets._common import GROUP_DATA, check_run_config, clear_errors
from llm_pipeline.assets._config import stage_config
from llm_pipeline.assets.cleaned import cleaned_corpus
from llm_pipeline.partitions import corpus_key, corpus_partitions
from llm_pipeline.progress import Progress, batch_size_for
from llm_pipeline.resources import StorageResource
from llm_pipeline.text.funnel import read_cleaning
from llm_pipeline.text.split import keys_digest
from llm_pipeline.text.split_file import read_split
from llm_pipeline.text.store import parquet_parts
from llm_pipeline.text.validation_keys import (
    VALIDATION_KEYS_FILE,
    validation_keys,
    write_validation_keys,
)
from llm_pipeline.tokens.bpe import (
    counted_texts,
    end_of_text_id,
    file_sha256,
    load_tokenizer,
    save_tokenizer,
    train_bpe,
)
from llm_pipeline.tokens.settings import TOKEN_SHARDS, TOKENIZER
from llm_pipeline.tokens.shards import iter_split_batches, write_shards

TOKENIZER_FILE = "tokenizer.json"
# Bytes-per-token is estimated on this many documents; enough for two significant digits.
SAMPLE_DOCS = 2000


TokenizerConfig = stage_config(TOKENIZER)
TokenShardsConfig = stage_config(TOKEN_SHARDS)


def _cleaned_inputs(storage: StorageResource, corpus: str) -> list:
    files = parquet_parts(storage.cleaned(corpus))
    if not files:
        raise Failure(description=f"corpus {corpus!r}: cleaned_corpus has no output")
    return files


def _cleaned_bytes(files: list) -> int:
    """UTF-8 bytes of the cleaned texts (the progress total), from the cleaning stage's
    `cleaning.json`; 0 (unknown: counts without percent) when it cannot be read."""
    try:
        return int((read_cleaning(Path(files[0]).parent) or {})["stats"]["bytes_out"])
    except (KeyError, TypeError, ValueError):
        return 0


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
    """
    check_run_config(context)
    corpus = corpus_key(context)
    if config.vocab_size < 258:
        raise Failure(description=f"vocab_size must be at least 258, got {config.vocab_size}")
    files = _cleaned_inputs(storage, corpus)
    try:
        split = read_split(storage.cleaned(corpus))
        next(iter_split_batches(files[:1]), None)  # refuses a table without the column
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Failure(description=f"corpus {corpus!r}: {exc}") from None
    n_docs = split.train_docs
    progress = Progress(split.train_bytes, "tokenizer", context.log.info)
    batches = iter_split_batches(files, batch_size=batch_size_for(n_docs, 1024), side="train")
    texts = counted_texts(batches, progress)
    bpe = train_bpe(texts, config.vocab_size, config.min_frequency, length=n_docs)
    progress.finish()
    path = storage.tokens(corpus) / TOKENIZER_FILE
    sha256 = save_tokenizer(bpe, path)

    sample_bytes = sample_tokens = 0
    for texts, byte_lengths, _ in iter_split_batches(files, SAMPLE_DOCS, side="train"):
        sample_tokens = sum(len(e.ids) for e in bpe.encode_batch(texts, add_special_tokens=False))
        sample_bytes = int(byte_lengths.sum())
        break
    bytes_per_token = sample_bytes / sample_tokens if sample_tokens else 0.0
    vocab = bpe.get_vocab_size(with_added_tokens=True)
    context.log.info(f"tokenizer: {vocab} tokens, {bytes_per_token:.2f} bytes/token")
    return MaterializeResult(
        metadata={
            "vocab_size": vocab,
            "bytes_per_token": round(bytes_per_token, 3),
            "training_documents": n_docs,
            "sha256": sha256,
            "path": MetadataValue.path(str(path)),
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
    survives cleaning changes); `meta.json` records the validation set's identity.
    """
    check_run_config(context)
    corpus = corpus_key(context)
    files = _cleaned_inputs(storage, corpus)
    folder = storage.tokens(corpus)
    tokenizer_path = folder / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        raise Failure(
            description=f"corpus {corpus!r}: {tokenizer_path} is missing; "
            "materialize the tokenizer asset"
        )
    bpe = load_tokenizer(tokenizer_path)
    try:
        split = read_split(storage.cleaned(corpus))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Failure(description=f"corpus {corpus!r}: {exc}") from None
    # The validation set's keys, so a later split can be compared with this one (promotion).
    # They must be the set split.json names: meta.json records that identity, and stored
    # scores are compared on it.
    keys = validation_keys(files)
    if keys_digest(keys) != split.keys_sha256:
        raise Failure(
            description=f"corpus {corpus!r}: the validation rows of {files[0].parent} are not "
            "the validation set its split.json names (parts edited after cleaning?); "
            "materialize cleaned_corpus again"
        )
    try:
        progress = Progress(_cleaned_bytes(files), "token_shards", context.log.info)
        meta = write_shards(
            bpe,
            iter_split_batches(files, batch_size=config.batch_size),
            folder,
            eot_id=end_of_text_id(bpe),
            extra_meta={
                "corpus": corpus,
                "tokenizer_sha256": file_sha256(tokenizer_path),
                "val_fraction": split.val_fraction,
                "min_val_docs": split.min_val_docs,
                "validation_set": split.identity(),
                "batch_size": config.batch_size,
            },
            progress=progress,
        )
        progress.finish()
    except ValueError as exc:
        raise Failure(description=f"corpus {corpus!r}: {exc}") from None
    write_validation_keys(folder / VALIDATION_KEYS_FILE, keys, split.identity())
    splits = meta["splits"]
    total_bytes = splits["train"]["bytes"] + splits["val"]["bytes"]
    total_tokens = splits["train"]["tokens"] + splits["val"]["tokens"]
    context.log.info(
        f"token_shards: {splits['train']['tokens']} train / {splits['val']['tokens']} val tokens"
    )
    return MaterializeResult(
        metadata={
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
    )
