"""`CleaningConfig`: everything the cleaning stage does, resolved from a profile plus overrides.

The user-facing keys are `text/settings.py`'s `CleanedCorpusSettings`; this is the resolved core
config the two passes (`clean.py`) run with, and the filters it builds, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from llm_pipeline.text.filters import (
    DuplicateLinesFilter,
    EmptyFilter,
    MaxCharsFilter,
    MinCharsFilter,
    MinWordsFilter,
    NonAlnumFractionFilter,
)
from llm_pipeline.text.funnel import EXACT_DUPLICATE, NEAR_DUPLICATE, NORMALIZE, PASSAGE_DUPLICATE
from llm_pipeline.text.minhash import MinHashConfig
from llm_pipeline.text.passages import DEFAULT_PASSAGE_MIN_WORDS
from llm_pipeline.text.profiles import (
    DEFAULT_PROFILE,
    PROFILE_SETTINGS,
    apply_overrides,
    profile_settings,
)
from llm_pipeline.text.quality import C4LineFilter, GopherQualityFilter, GopherRepetitionFilter

_DEFAULTS = PROFILE_SETTINGS[DEFAULT_PROFILE]
_DEFAULT_MINHASH = MinHashConfig()


@dataclass(frozen=True)
class CleaningConfig:
    """Everything the cleaning stage does, resolved from a profile plus overrides.

    0 (or 1.0 for a fraction) turns a basic threshold off; `c4_lines`, `gopher_repetition`,
    `gopher_quality`, `exact_dedup`, `near_dedup` and `passage_dedup` turn whole steps off
    (`passage_min_words`: the shortest paragraph passage dedup compares, see `passages.py`);
    `c4`, `repetition`, `quality` and `minhash` carry their thresholds (see `quality.py`,
    `minhash.py`).
    The plain constructor gives the default profile's settings; use `from_profile` for others.
    """

    profile: str = DEFAULT_PROFILE
    min_chars: int = _DEFAULTS["min_chars"]
    max_chars: int = _DEFAULTS["max_chars"]
    min_words: int = _DEFAULTS["min_words"]
    max_non_alnum_fraction: float = _DEFAULTS["max_non_alnum_fraction"]
    max_duplicate_line_fraction: float = _DEFAULTS["max_duplicate_line_fraction"]
    c4_lines: bool = _DEFAULTS["c4_lines"]
    gopher_repetition: bool = _DEFAULTS["gopher_repetition"]
    gopher_quality: bool = _DEFAULTS["gopher_quality"]
    c4: C4LineFilter = _DEFAULTS["c4"]
    repetition: GopherRepetitionFilter = _DEFAULTS["repetition"]
    quality: GopherQualityFilter = _DEFAULTS["quality"]
    exact_dedup: bool = True
    near_dedup: bool = True
    passage_dedup: bool = _DEFAULTS["passage_dedup"]
    passage_min_words: int = DEFAULT_PASSAGE_MIN_WORDS
    minhash: MinHashConfig = _DEFAULT_MINHASH
    dropped_sample_size: int = 100
    val_fraction: float = 0.05
    min_val_docs: int = 20

    @classmethod
    def from_profile(cls, profile: str = DEFAULT_PROFILE, **overrides: Any) -> CleaningConfig:
        """A profile's settings with `overrides` on top: plain field names, or
        `"section.field"` for thresholds (`{"quality.min_words": 20}`).
        Unknown profiles or keys raise a ValueError that lists the valid ones."""
        settings = apply_overrides(profile_settings(profile), overrides)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"unknown cleaning settings {unknown}; valid: {sorted(known)}")
        return cls(profile=profile, **{k: v for k, v in settings.items() if k != "profile"})

    def filters(self) -> list:
        """The document filters and the C4 line transform, in the order they run."""
        head, tail = self._basic_rules()
        rules: list = list(head)
        if self.c4_lines:
            rules.append(self.c4)
        if self.gopher_repetition:
            rules.append(self.repetition)
        if self.gopher_quality:
            rules.append(self.quality)
        return rules + tail

    def basic_filters(self) -> list:
        """The cheap rules on length and symbols (no C4, no Gopher), in order: what a document
        must still pass once passage dedup has taken text out of it (`survivors.py`)."""
        head, tail = self._basic_rules()
        return head + tail

    def _basic_rules(self) -> tuple[list, list]:
        return (
            [
                EmptyFilter(),
                MinCharsFilter(self.min_chars),
                MaxCharsFilter(self.max_chars),
                MinWordsFilter(self.min_words),
            ],
            [
                NonAlnumFractionFilter(self.max_non_alnum_fraction),
                DuplicateLinesFilter(self.max_duplicate_line_fraction),
            ],
        )

    def step_names(self) -> list[str]:
        """Funnel steps in order: normalisation, each filter, then the three dedups."""
        names = [NORMALIZE, *(rule.name for rule in self.filters())]
        if self.exact_dedup:
            names.append(EXACT_DUPLICATE)
        if self.near_dedup:
            names.append(NEAR_DUPLICATE)
        if self.passage_dedup:
            names.append(PASSAGE_DUPLICATE)
        return names
