"""`CleaningConfig`: everything the cleaning stage does, resolved from a profile plus overrides.

The user-facing keys are `text/settings.py`'s `CleanedCorpusSettings`; this is the resolved core
config the two passes (`clean.py`) run with, and the filters it builds, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

from llm_pipeline.text.dedup.minhash import MinHashConfig
from llm_pipeline.text.dedup.passages import DEFAULT_PASSAGE_MIN_WORDS
from llm_pipeline.text.filters.profiles import (
    DEFAULT_PROFILE,
    PROFILE_SETTINGS,
    apply_overrides,
    profile_settings,
)
from llm_pipeline.text.filters.registry import FILTERS, sections, switch_keys, threshold_keys
from llm_pipeline.text.funnel import EXACT_DUPLICATE, NEAR_DUPLICATE, NORMALIZE, PASSAGE_DUPLICATE

_DEFAULTS = PROFILE_SETTINGS[DEFAULT_PROFILE]
_DEFAULT_MINHASH = MinHashConfig()


def _filter_fields() -> list[tuple[str, Any, Any]]:
    """One field per filter setting, read from the registry (`filters/registry.py`): the plain
    filters' thresholds, the sectioned filters' switches, then the sectioned filters
    themselves; each defaults to the default profile's value."""
    types: dict[str, Any] = {}
    for entry in FILTERS:
        if entry.section is None:
            types.update({p.name: p.type for p in entry.parameters})
        else:
            types[entry.name], types[entry.section] = bool, entry.filter
    keys = (*threshold_keys(), *switch_keys(), *sections())
    return [(key, types[key], field(default=_DEFAULTS[key])) for key in keys]


# Generated, so a filter added to the registry is a setting here with no other edit.
_FilterSettings = make_dataclass("FilterSettings", _filter_fields(), frozen=True)
_FilterSettings.__module__ = __name__


@dataclass(frozen=True)
class CleaningConfig(_FilterSettings):
    """Everything the cleaning stage does, resolved from a profile plus overrides.

    The filter fields come from the registry (`filters/registry.py`): `min_chars`, `max_chars`,
    `min_words`, `max_non_alnum_fraction`, `max_duplicate_line_fraction` (0, or 1.0 for a
    fraction, turns one off); `c4_lines`, `gopher_repetition`, `gopher_quality` (whole filters
    on/off) and `c4`, `repetition`, `quality` (their thresholds, see `quality.py`).
    `exact_dedup`, `near_dedup` and `passage_dedup` turn whole steps off (`passage_min_words`:
    the shortest paragraph passage dedup compares, see `passages.py`); `minhash` carries the
    near-duplicate thresholds (`minhash.py`).
    The plain constructor gives the default profile's settings; use `from_profile` for others.
    """

    profile: str = DEFAULT_PROFILE
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
        """The document filters and the C4 line transform, in the order they run (the
        registry's), less those switched off."""
        return [rule for entry in FILTERS if (rule := entry.build(self)) is not None]

    def basic_filters(self) -> list:
        """The cheap rules on length and symbols (no C4, no Gopher), in order: what a document
        must still pass once passage dedup has taken text out of it (`survivors.py`)."""
        return [entry.build(self) for entry in FILTERS if entry.after_passage_dedup]

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
