"""Byte-level BPE trained with HF `tokenizers`, streamed from the cleaned corpus.

Byte-level means every string round-trips exactly (decode(encode(x)) == x) and no input is ever
out of vocabulary, which is what a from-scratch language model on arbitrary text needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from llm_pipeline.atomic import atomic_path
from llm_pipeline.progress import Progress
from llm_pipeline.safe_open import open_binary, read_bytes

# The tokenizer file, in the shard folder and in every checkpoint (HF `tokenizers` JSON).
TOKENIZER_FILE = "tokenizer.json"

END_OF_TEXT = "<|endoftext|>"


def train_bpe(
    text_batches: Iterable[list[str]],
    vocab_size: int,
    min_frequency: int = 2,
    length: int | None = None,
) -> Tokenizer:
    """Train a byte-level BPE on batches of documents; `<|endoftext|>` gets id 0.

    `length` (number of documents, if known) only feeds the progress estimate. The returned
    tokenizer encodes a literal "<|endoftext|>" in text as ordinary bytes (see `load_tokenizer`).
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_flatten(text_batches), trainer=trainer, length=length)
    tokenizer.encode_special_tokens = True
    return tokenizer


def counted_texts(batches: Iterable[tuple], progress: Progress) -> Iterator[list[str]]:
    """The texts of `(texts, byte_lengths, is_val)` batches (`iter_split_batches`), advancing
    `progress` as the trainer pulls them: BPE training reads the corpus once, so this is its
    progress (the merges that follow are short by comparison)."""
    for texts, byte_lengths, _ in batches:
        yield texts
        progress.advance(len(texts), int(byte_lengths.sum()))


def _flatten(batches: Iterable[list[str]]) -> Iterator[str]:
    for batch in batches:
        yield from batch


def save_tokenizer(tokenizer: Tokenizer, path: Path) -> str:
    """Write `tokenizer.json` atomically; return its SHA-256 (the tokenizer's identity)."""
    data = tokenizer.to_str(pretty=True).encode("utf-8")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def load_tokenizer(path: Path) -> Tokenizer:
    """Load a `tokenizer.json` written by `save_tokenizer` (plain JSON, nothing executed).

    `encode_special_tokens` is switched on (it is not saved in the file): the string
    "<|endoftext|>" inside a user's document is then encoded as ordinary text, so only the
    pipeline itself ever writes the end-of-text id and documents cannot forge boundaries.
    """
    tokenizer = Tokenizer.from_str(read_tokenizer_json(path))
    tokenizer.encode_special_tokens = True
    return tokenizer


def read_tokenizer_json(path: Path) -> str:
    """The text of a `tokenizer.json`, read through one no-follow descriptor: a FIFO, device or
    link planted in its place is refused at once (`UnsafeFileError`) instead of hanging the
    step or reading a file elsewhere (`Tokenizer.from_file` opens the name)."""
    return read_bytes(path).decode("utf-8")


def tokenizer_from_json(text: str) -> Tokenizer:
    """A tokenizer from the text of a `tokenizer.json` already read (and checked) by the caller,
    switched to encode special tokens as text like `load_tokenizer`."""
    tokenizer = Tokenizer.from_str(text)
    tokenizer.encode_special_tokens = True
    return tokenizer


def file_sha256(path: Path) -> str:
    """SHA-256 of a regular file, streamed through one no-follow descriptor."""
    digest = hashlib.sha256()
    with open_binary(path) as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def end_of_text_id(tokenizer: Tokenizer) -> int:
    """The id of the end-of-text token, which separates documents in the shards."""
    token_id = tokenizer.token_to_id(END_OF_TEXT)
    if token_id is None:
        raise ValueError(f"tokenizer has no {END_OF_TEXT} token")
    return token_id
