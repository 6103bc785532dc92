"""The `tokenizer` and `token_shards` settings, defined once (see llm_pipeline/settings.py)."""

from __future__ import annotations

from dataclasses import dataclass

from llm_pipeline.settings import Settings, Stage, setting, specs


@dataclass
class TokenizerSettings(Settings):
    """Byte-level BPE settings."""

    vocab_size: int = setting(
        4096,
        "Vocabulary size including the 256 byte tokens and <|endoftext|>. 4096 suits corpora "
        "of a few MB; raise it for larger ones.",
        ge=258,
    )
    min_frequency: int = setting(2, "Merges seen fewer times are not learned.", ge=1)


@dataclass
class TokenShardsSettings(Settings):
    """Train/validation split and encoding settings."""

    val_fraction: float = setting(0.05, "Fraction of documents for validation.", gt=0.0, lt=1.0)
    min_val_docs: int = setting(
        20, "At least this many validation documents (one is always left for training).", ge=0
    )
    batch_size: int = setting(1024, "Documents per parallel encode call.", ge=1)


TOKENIZER = Stage("tokenizer", specs(TokenizerSettings), TokenizerSettings.__doc__ or "")
TOKEN_SHARDS = Stage("token_shards", specs(TokenShardsSettings), TokenShardsSettings.__doc__ or "")
