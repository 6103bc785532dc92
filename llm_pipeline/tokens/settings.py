"""The `tokenizer` and `token_shards` settings, defined once (see llm_pipeline/settings_base.py)."""

from __future__ import annotations

from llm_pipeline.settings_base import Settings, Stage, setting


class TokenizerSettings(Settings):
    """Byte-level BPE settings."""

    vocab_size: int = setting(
        4096,
        "Vocabulary size including the 256 byte tokens and <|endoftext|>. 4096 suits corpora "
        "of a few MB; raise it for larger ones.",
        ge=258,
    )
    min_frequency: int = setting(2, "Merges seen fewer times are not learned.", ge=1)


class TokenShardsSettings(Settings):
    """Encoding settings. The split follows `cleaned_corpus`'s `split` column."""

    batch_size: int = setting(1024, "Documents per parallel encode call.", ge=1)


TOKENIZER = Stage("tokenizer", TokenizerSettings, TokenizerSettings.__doc__ or "")
# The split is decided in cleaned_corpus now (text/split/sides.py); the old keys are refused with
# where they went rather than silently ignored (a silent alias would hide a changed split).
MOVED_KEYS = {
    "val_fraction": "cleaned_corpus.val_fraction",
    "min_val_docs": "cleaned_corpus.min_val_docs",
}
TOKEN_SHARDS = Stage(
    "token_shards", TokenShardsSettings, TokenShardsSettings.__doc__ or "", moved=MOVED_KEYS
)
