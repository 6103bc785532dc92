"""Cleaning profiles: defaults that fit a kind of text instead of throwing it away.

The published Gopher and C4 thresholds were tuned on web crawls. Applied to other text they
remove good data: C4's "every line ends in punctuation" deletes verse and code, Gopher's
"≥ 50 words, ≥ 2 stop words" deletes most one-line docstrings, and "≤ 30 % duplicated lines"
deletes plays (speaker names repeat). A profile starts from the web defaults and turns off or
relaxes exactly the rules that misfire on its kind of text:

- `web`: everything on at the published thresholds (C4 lines, Gopher repetition and quality).
- `books`: no C4 line rules (verse, dialogue, headings); line repetition off (speaker names,
  refrains), paragraph and n-gram repetition kept; Gopher quality on with ≥ 20 words so the
  last chunk of a book survives.
- `docs`: short texts are the norm: no C4, no Gopher word minimum, stop-word rule or maximum
  mean word length (URLs, dotted names), no ellipsis ratio (doctest `...` prompts), fewer
  alphabetic words allowed (code examples), relaxed line repetition (section underlines), and
  n-gram repetition only from 50 words up (in a two-line docstring one repeated phrase is a
  large fraction by chance).
- `code`: no C4, no Gopher quality (symbols, short identifiers and few stop words are normal),
  only extreme n-gram repetition (generated or minified files), a higher symbol ceiling, and no
  passage dedup (a repeated block of code is part of its file: taking it out breaks the file).

Passage dedup (`passages.py`) is on in `web`, `books` and `docs`: shared footers, clause
libraries, quoted replies and licence texts are the text that otherwise sits on both sides of
the split and is learned many times over. Measured (benchmarks/split.py): on the built-in corpus
it takes out 1.6% of the bytes (licence lines, a summary repeated in subclasses); on corpora
assembled from shared paragraphs it is what keeps the leakage at 0% (without it 4.6-19% of
validation bytes leak and 50-64% of validation 13-grams are in training text: a split has no
leak-free side to draw).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from llm_pipeline.settings_base import SettingsError
from llm_pipeline.text.dedup.minhash import MinHashConfig
from llm_pipeline.text.filters.registry import filter_settings, sections

# A profile is data: each filter's name with its parameters (None: off), by the filter's own
# field names (`filters/registry.py`; sectioned filters start from their published defaults),
# and whether passage dedup runs.
Profile = dict[str, Any]

_WEB: Profile = {
    "min_chars": {"min_chars": 20},
    "max_chars": {"max_chars": 100_000},
    "min_words": {"min_words": 3},
    "c4_lines": {},
    "gopher_repetition": {},
    "gopher_quality": {},
    "non_alnum_fraction": {"max_non_alnum_fraction": 0.5},
    "duplicate_lines": {"max_duplicate_line_fraction": 0.5},
    "passage_dedup": True,
}

_PROFILES: dict[str, Profile] = {
    "web": _WEB,
    "books": {
        **_WEB,
        "duplicate_lines": {"max_duplicate_line_fraction": 1.0},
        "c4_lines": None,
        "gopher_repetition": {"max_dup_line_fraction": 0.0, "max_dup_line_char_fraction": 0.0},
        "gopher_quality": {"min_words": 20},
    },
    "docs": {
        **_WEB,
        "c4_lines": None,
        "gopher_repetition": {
            "max_dup_line_fraction": 0.5,
            "max_dup_line_char_fraction": 0.3,
            "max_dup_paragraph_fraction": 0.5,
            "max_dup_paragraph_char_fraction": 0.3,
            "ngram_min_words": 50,
        },
        "gopher_quality": {
            "min_words": 0,
            "max_mean_word_length": 0.0,
            "max_symbol_word_ratio": 0.0,
            "max_ellipsis_lines_fraction": 0.5,
            "min_alpha_words_fraction": 0.5,
            "min_stop_words": 0,
        },
    },
    "code": {
        **_WEB,
        "min_words": {"min_words": 1},
        "non_alnum_fraction": {"max_non_alnum_fraction": 0.7},
        "duplicate_lines": {"max_duplicate_line_fraction": 1.0},
        "c4_lines": None,
        "gopher_quality": None,
        "passage_dedup": False,
        "gopher_repetition": {
            "max_dup_line_fraction": 0.0,
            "max_dup_paragraph_fraction": 0.0,
            "max_dup_line_char_fraction": 0.0,
            "max_dup_paragraph_char_fraction": 0.0,
            "top_ngram_char_fractions": (),
            "dup_ngram_char_fractions": ((10, 0.5),),
        },
    },
}

PROFILES = tuple(_PROFILES)
# The built-in corpus is the standard library's docstrings.
DEFAULT_PROFILE = "docs"


def _settings(profile: Profile) -> dict[str, Any]:
    filters = {k: v for k, v in profile.items() if k != "passage_dedup"}
    return {**filter_settings(filters), "passage_dedup": profile["passage_dedup"]}


# Each profile as flat settings (`CleaningConfig`'s fields): `{"min_chars": 20, ...,
# "c4_lines": False, "c4": C4LineFilter(), ..., "passage_dedup": True}`.
PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    name: _settings(profile) for name, profile in _PROFILES.items()
}

_SECTIONS_WITH_MINHASH = {**sections(), "minhash": MinHashConfig}


def profile_settings(profile: str) -> dict[str, Any]:
    """The settings a profile picks (a copy), or a SettingsError naming the valid profiles."""
    if profile not in PROFILE_SETTINGS:
        raise SettingsError(
            "profile", f"unknown cleaning profile {profile!r}; choose one of {', '.join(PROFILES)}"
        )
    return dict(PROFILE_SETTINGS[profile])


def apply_overrides(settings: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Overlay `{"field": v}` and `{"section.field": v}` overrides (sections: the sectioned
    filters' — c4, repetition, quality, see `filters/registry.py` — and minhash); unknown keys
    raise a SettingsError naming the key and the nearest valid one."""
    out = dict(settings)
    for key, value in overrides.items():
        if "." in key:
            section, name = key.split(".", 1)
            cls = _SECTIONS_WITH_MINHASH.get(section)
            if cls is None:
                raise SettingsError(
                    key,
                    f"unknown section {section!r}; use one of {', '.join(_SECTIONS_WITH_MINHASH)}",
                )
            names = [f.name for f in dataclasses.fields(cls) if f.name != "name"]
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
                hint = f"did you mean {section}.{close[0]}?" if close else f"valid: {names}"
                raise SettingsError(key, f"{section} has no {name!r} ({hint})")
            if isinstance(value, list):
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            current_section = out.get(section) or cls()
            current = getattr(current_section, name)
            # Configs from YAML or the launchpad may give 20.0 for 20 or 0/1 for a switch.
            if isinstance(current, bool):
                value = bool(value)
            elif isinstance(current, int) and isinstance(value, float) and value.is_integer():
                value = int(value)
            out[section] = dataclasses.replace(current_section, **{name: value})
        else:
            out[key] = value
    return out
