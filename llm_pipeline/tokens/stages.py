"""The two token stages as one call each, without Dagster: `build_tokenizer` (a byte-level BPE
trained on the cleaned corpus's train side) and `encode_corpus` (both sides as token shards,
with the validation set's identity and keys).

The `tokenizer` and `token_shards` assets are thin shells over these; a benchmark or a notebook
runs the same stage with the same checks and failure messages. Progress lines go to `emit`; an
input the stage refuses raises `PipelineInputError` with the message the run shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llm_pipeline.errors import PipelineInputError
from llm_pipeline.progress import Emit, Progress, batch_size_for
from llm_pipeline.text.funnel import read_cleaning
from llm_pipeline.text.split.sides import SplitSummary, keys_digest
from llm_pipeline.text.split.split_file import read_split
from llm_pipeline.text.split.validation_keys import (
    VALIDATION_KEYS_FILE,
    validation_keys,
    write_validation_keys,
)
from llm_pipeline.text.store import parquet_parts
from llm_pipeline.tokens.bpe import (
    TOKENIZER_FILE,
    counted_texts,
    end_of_text_id,
    file_sha256,
    load_tokenizer,
    save_tokenizer,
    train_bpe,
)
from llm_pipeline.tokens.settings import TokenizerSettings, TokenShardsSettings
from llm_pipeline.tokens.shards import iter_split_batches, write_shards

# Bytes-per-token is estimated on this many documents; enough for two significant digits.
SAMPLE_DOCS = 2000
# The smallest vocabulary: the 256 byte tokens, one merge and `<|endoftext|>`.
MIN_VOCAB_SIZE = 258


@dataclass(frozen=True)
class BuiltTokenizer:
    """The saved tokenizer: where, its size with the special token, its SHA-256, how many
    training documents shaped it, and its bytes per token on a sample of them."""

    path: Path
    vocab_size: int
    sha256: str
    training_documents: int
    bytes_per_token: float


def cleaned_parts(cleaned: Path, corpus: str) -> list[Path]:
    """The cleaned corpus's parts; refused when `cleaned_corpus` has not written any."""
    files = parquet_parts(cleaned)
    if not files:
        raise PipelineInputError(f"corpus {corpus!r}: cleaned_corpus has no output")
    return files


def _read_split(cleaned: Path, corpus: str) -> SplitSummary:
    try:
        return read_split(cleaned)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PipelineInputError(f"corpus {corpus!r}: {exc}") from None


def _cleaned_bytes(files: list) -> int:
    """UTF-8 bytes of the cleaned texts (the progress total), from the cleaning stage's
    `cleaning.json`; 0 (unknown: counts without percent) when it cannot be read."""
    try:
        return int((read_cleaning(Path(files[0]).parent) or {})["stats"]["bytes_out"])
    except (KeyError, TypeError, ValueError):
        return 0


def build_tokenizer(
    cleaned: Path,
    folder: Path,
    corpus: str,
    settings: TokenizerSettings,
    emit: Emit | None = None,
) -> BuiltTokenizer:
    """Train a byte-level BPE on the `train` rows of the cleaned corpus in `cleaned` (validation
    text never shapes the vocabulary), streamed from Parquet, and save it atomically as
    `folder/tokenizer.json` with `<|endoftext|>` as a special token."""
    if settings.vocab_size < MIN_VOCAB_SIZE:
        raise PipelineInputError(
            f"vocab_size must be at least {MIN_VOCAB_SIZE}, got {settings.vocab_size}"
        )
    files = cleaned_parts(cleaned, corpus)
    split = _read_split(cleaned, corpus)
    try:
        next(iter_split_batches(files[:1]), None)  # refuses a table without the column
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PipelineInputError(f"corpus {corpus!r}: {exc}") from None
    n_docs = split.train_docs
    progress = Progress(split.train_bytes, "tokenizer", emit)
    batches = iter_split_batches(files, batch_size=batch_size_for(n_docs, 1024), side="train")
    texts = counted_texts(batches, progress)
    bpe = train_bpe(texts, settings.vocab_size, settings.min_frequency, length=n_docs)
    progress.finish()
    path = folder / TOKENIZER_FILE
    sha256 = save_tokenizer(bpe, path)

    sample_bytes = sample_tokens = 0
    for texts, byte_lengths, _ in iter_split_batches(files, SAMPLE_DOCS, side="train"):
        sample_tokens = sum(len(e.ids) for e in bpe.encode_batch(texts, add_special_tokens=False))
        sample_bytes = int(byte_lengths.sum())
        break
    bytes_per_token = sample_bytes / sample_tokens if sample_tokens else 0.0
    vocab = bpe.get_vocab_size(with_added_tokens=True)
    return BuiltTokenizer(path, vocab, sha256, n_docs, bytes_per_token)


def encode_corpus(
    cleaned: Path,
    folder: Path,
    corpus: str,
    settings: TokenShardsSettings,
    emit: Emit | None = None,
) -> dict:
    """Encode the cleaned corpus in `cleaned` with `folder/tokenizer.json` into `folder`'s
    `train.bin`, `val.bin` and `meta.json` (returned), and keep the validation set's keys.

    The sides follow the cleaned corpus's `split` column; the validation rows must be the set
    its `split.json` names, since `meta.json` records that identity and the champion
    comparison trusts it.
    """
    files = cleaned_parts(cleaned, corpus)
    tokenizer_path = folder / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        raise PipelineInputError(
            f"corpus {corpus!r}: {tokenizer_path} is missing; materialize the tokenizer asset"
        )
    bpe = load_tokenizer(tokenizer_path)
    split = _read_split(cleaned, corpus)
    # The validation set's keys, so a later split can be compared with this one (promotion).
    # They must be the set split.json names: meta.json records that identity, and stored
    # scores are compared on it.
    keys = validation_keys(files)
    if keys_digest(keys) != split.keys_sha256:
        raise PipelineInputError(
            f"corpus {corpus!r}: the validation rows of {files[0].parent} are not "
            "the validation set its split.json names (parts edited after cleaning?); "
            "materialize cleaned_corpus again"
        )
    try:
        progress = Progress(_cleaned_bytes(files), "token_shards", emit)
        meta = write_shards(
            bpe,
            iter_split_batches(files, batch_size=settings.batch_size),
            folder,
            eot_id=end_of_text_id(bpe),
            extra_meta={
                "corpus": corpus,
                "tokenizer_sha256": file_sha256(tokenizer_path),
                "val_fraction": split.val_fraction,
                "min_val_docs": split.min_val_docs,
                "validation_set": split.identity(),
                "batch_size": settings.batch_size,
            },
            progress=progress,
        )
        progress.finish()
    except ValueError as exc:
        raise PipelineInputError(f"corpus {corpus!r}: {exc}") from None
    write_validation_keys(folder / VALIDATION_KEYS_FILE, keys, split.identity())
    return meta
