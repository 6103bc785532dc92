"""The `raw_corpus` and `cleaned_corpus` settings, defined once (see llm_pipeline/settings_base.py).

`CleanedCorpusSettings` are the keys users write (flat names, `thresholds` as "section.field");
`cleaning()` resolves them with the profile into the core `CleaningConfig` the cleaner runs.
A field left unset (None) keeps the profile's value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pydantic

from llm_pipeline.settings_base import Settings, SettingsError, Stage, setting
from llm_pipeline.text.dedup.passages import DEFAULT_PASSAGE_MIN_WORDS
from llm_pipeline.text.filters.profiles import DEFAULT_PROFILE, PROFILES
from llm_pipeline.text.filters.registry import settings_fields, switch_keys, threshold_keys
from llm_pipeline.text.read.decoding import ENCODING_POLICIES

if TYPE_CHECKING:
    from llm_pipeline.text.clean import CleaningConfig


class RawCorpusSettings(Settings):
    """How the corpus's files are read."""

    text_field: str = setting("text", "Field of a JSONL record / column of a Parquet file.")
    max_doc_chars: int = setting(
        20_000,
        "Longer documents are cut at paragraph breaks into chunks of at most this many "
        "characters, so a one-book corpus still splits into train and validation. 0: never.",
        ge=0,
    )
    encoding_errors: str = setting(
        "replace",
        "Invalid UTF-8: replace (a few stray bytes become U+FFFD and are counted; a file mostly "
        "in another encoding is decoded in the one detected) or skip (the whole file).",
        choices=ENCODING_POLICIES,
    )
    # Caps on untrusted input: each stops one file or record with its reason, never the run.
    max_document_bytes: int = setting(
        64 << 20,
        "A single document larger than this many bytes (a JSONL line, a Parquet value, a "
        ".txt/.md file when max_doc_chars is 0) is skipped with its reason, unread: it bounds "
        "the reader's memory. Parquet values are measured from their offsets, not decoded.",
        ge=1,
    )
    max_decompression_ratio: float = setting(
        100.0,
        "A .gz/.zst file that expands past this many times its compressed size (at least "
        "1 MiB) is stopped there and skipped as a likely decompression bomb; text compresses "
        "about 3-10 times. 0: no ratio cap.",
        ge=0.0,
    )
    max_decompressed_mb: int = setting(
        16_384,
        "A .gz/.zst file that expands past this many MiB is stopped there and skipped (also "
        "the most a compressed Parquet file's temporary copy may take on disk). 0: no cap.",
        ge=0,
    )


class CorpusAddSettings(Settings):
    """Caps of `llm-pipeline corpus add` on downloads (the CLI's flag defaults)."""

    max_download_mb: int = setting(
        4096,
        "A download larger than this many MiB is stopped and nothing is saved, whether or "
        "not the server sends a Content-Length.",
        ge=1,
    )
    download_timeout_seconds: float = setting(
        60.0, "A download with no data for this many seconds fails.", gt=0.0
    )


# Plain keys that override the profile when given (None: keep the profile's value): the
# filters' own (text/filters/registry.py), then passage dedup's switch.
PROFILE_KEYS = (*threshold_keys(), *switch_keys(), "passage_dedup")


class _CleaningChoices(Settings):
    """A profile picks the filters and thresholds; any field left unset keeps the profile's value.

    Thresholds: 0 (or 1.0 for a fraction) turns a basic filter off. Finer thresholds of the
    Gopher/C4 filters go in `thresholds` as `{"quality.min_words": 20, "c4.min_sentences": 3}`
    (sections `quality`, `repetition`, `c4`; see llm_pipeline/text/filters/quality.py).
    """

    profile: str = setting(
        DEFAULT_PROFILE,
        "Filter defaults for a kind of text (docs fits the built-in corpus).",
        choices=PROFILES,
    )
    thresholds: dict[str, float] = setting(
        {}, 'Filter thresholds, e.g. {"quality.min_stop_words": 1}.'
    )
    exact_dedup: bool = setting(True, "Drop exact duplicates.")
    near_dedup: bool = setting(True, "Drop MinHash near-duplicates.")
    passage_dedup: bool | None = setting(
        None,
        "Keep a paragraph repeated across documents once, in its first document (shared "
        "footers, clause libraries, quoted replies); on in every profile but code.",
    )
    passage_min_words: int = setting(
        DEFAULT_PASSAGE_MIN_WORDS,
        "Paragraphs with fewer words are never taken out by passage dedup.",
        ge=1,
    )
    minhash_ngram: int = setting(5, "Words per shingle.", ge=1)
    minhash_bands: int = setting(14, "LSH bands.", ge=1)
    minhash_rows: int = setting(8, "Signature rows per band.", ge=1)
    near_dup_threshold: float = setting(
        0.8, "Estimated Jaccard similarity that counts.", ge=0.0, le=1.0
    )
    dropped_sample_size: int = setting(100, "Removed documents kept per filter in _dropped/.", ge=0)
    val_fraction: float = setting(
        0.05,
        "Share of the cleaned bytes for validation (never above twice this; text/split/sides.py).",
        gt=0.0,
        lt=0.5,
    )
    min_val_docs: int = setting(
        20,
        "At least this many validation documents, while their share stays within 1.25 x "
        "val_fraction.",
        ge=0,
    )
    workers: int = setting(0, "Cleaning processes; 0 = one per CPU core.", ge=0)

    def cleaning(self) -> CleaningConfig:
        """The resolved core config; a SettingsError names a bad profile or threshold key.

        clean.py (numpy, pyarrow) is imported here, not at the top: the CLI checks a YAML file
        with this module before it needs any of that."""
        from llm_pipeline.text.clean import CleaningConfig

        overrides: dict = {
            name: getattr(self, name) for name in PROFILE_KEYS if getattr(self, name) is not None
        }
        for key, value in self.thresholds.items():
            if "." not in key or key.startswith("minhash."):
                raise SettingsError(
                    f"thresholds.{key}",
                    "not a 'section.field' key of quality, repetition or c4",
                )
            overrides[key] = value
        overrides.update(
            {
                "exact_dedup": self.exact_dedup,
                "near_dedup": self.near_dedup,
                "passage_min_words": self.passage_min_words,
                "minhash.ngram": self.minhash_ngram,
                "minhash.bands": self.minhash_bands,
                "minhash.rows": self.minhash_rows,
                "minhash.threshold": self.near_dup_threshold,
                "dropped_sample_size": self.dropped_sample_size,
                "val_fraction": self.val_fraction,
                "min_val_docs": self.min_val_docs,
            }
        )
        try:
            return CleaningConfig.from_profile(self.profile, **overrides)
        except SettingsError as exc:
            if exc.key in self.thresholds:
                raise SettingsError(f"thresholds.{exc.key}", exc.problem) from None
            raise
        except (ValueError, TypeError) as exc:  # a threshold of the wrong kind
            raise SettingsError("thresholds", str(exc)) from None

    def check_rules(self) -> None:
        self.cleaning()


# The filters' own keys (thresholds and switches) come from the filter registry, after the
# profile: a filter added there is a setting here with no edit of this file.
CleanedCorpusSettings = pydantic.create_model(
    "CleanedCorpusSettings",
    __base__=_CleaningChoices,
    __doc__=_CleaningChoices.__doc__,
    __module__=__name__,
    **settings_fields(),
)


RAW_CORPUS = Stage("raw_corpus", RawCorpusSettings, RawCorpusSettings.__doc__ or "")
CLEANED_CORPUS = Stage(
    "cleaned_corpus",
    CleanedCorpusSettings,
    "A profile picks the filters and thresholds; unset fields keep the profile's value.",
)
