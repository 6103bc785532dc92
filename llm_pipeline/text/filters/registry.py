"""The text filters, registered once, in the order they run; everything else derives from here.

The cleaning settings (`CleaningConfig`'s filter fields, `text/settings.py`'s `PROFILE_KEYS`,
the `section.field` threshold sections), the profiles' validation and the list of filters a
cleaning run applies are all read from `FILTERS`. The funnel's steps are the filters' names,
in this order, so this list is also the funnel's order.

Two kinds of filter, by where their settings live:

- a *plain* filter (no `section`) is always in the run; each of its parameters is a settings
  key of its own (`min_chars`, `max_non_alnum_fraction`: the dataclass field's name is the
  key), and 0 (or 1.0 for a fraction) turns it off;
- a *sectioned* filter (Gopher, C4: many thresholds) is switched on and off by its name
  (`gopher_quality: false`), and its thresholds are overridden as `"section.field"`
  (`quality.min_words`); the resolved config keeps the whole filter under `section`.

Adding a filter: write it (a frozen dataclass `DocumentFilter`, see `basic.py`; its
thresholds are documented fields with defaults, its `name` is the funnel step), add one line
to `FILTERS` where it should run, and give the profiles that want other thresholds its name
with parameters in `profiles.py` (a profile is data: filter name → parameters).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from llm_pipeline.text.filters.basic import (
    DocumentFilter,
    DuplicateLinesFilter,
    EmptyFilter,
    MaxCharsFilter,
    MinCharsFilter,
    MinWordsFilter,
    NonAlnumFractionFilter,
)
from llm_pipeline.text.filters.quality import (
    C4LineFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)


@dataclass(frozen=True)
class RegisteredFilter:
    """One filter of the cleaning run and where its settings live (see the module)."""

    filter: type[DocumentFilter]
    # Set for a filter switched on/off by its name, with thresholds under "section.field".
    section: str | None = None
    # Judged again on the documents passage dedup took text out of (`survivors.py`): the cheap
    # rules on length and symbols, which a shortened document may newly fail.
    after_passage_dedup: bool = False
    # A sectioned filter's on/off setting, described for the launchpad and the docs.
    switch_doc: str = ""

    @property
    def name(self) -> str:
        """The funnel step (the filter's `name`), and the on/off key of a sectioned filter."""
        return next(f.default for f in dataclasses.fields(self.filter) if f.name == "name")

    @property
    def parameters(self) -> tuple[dataclasses.Field, ...]:
        """The filter's thresholds (its dataclass fields, less `name`)."""
        return tuple(f for f in dataclasses.fields(self.filter) if f.name != "name")

    def defaults(self) -> dict[str, Any]:
        """The parameters a profile may leave out: those declared with a default."""
        return {p.name: p.default for p in self.parameters if p.default is not dataclasses.MISSING}

    def build(self, settings: Any) -> DocumentFilter | None:
        """This filter as `settings` (a `CleaningConfig`) configures it; None when off."""
        if self.section is not None:
            return getattr(settings, self.section) if getattr(settings, self.name) else None
        return self.filter(**{p.name: getattr(settings, p.name) for p in self.parameters})


# The registry: one line per filter, in the order they run (and the funnel lists them).
FILTERS: tuple[RegisteredFilter, ...] = (
    RegisteredFilter(EmptyFilter, after_passage_dedup=True),
    RegisteredFilter(MinCharsFilter, after_passage_dedup=True),
    RegisteredFilter(MaxCharsFilter, after_passage_dedup=True),
    RegisteredFilter(MinWordsFilter, after_passage_dedup=True),
    RegisteredFilter(C4LineFilter, section="c4", switch_doc="C4 line cleaning on/off."),
    RegisteredFilter(
        GopherRepetitionFilter, section="repetition", switch_doc="Gopher repetition filter on/off."
    ),
    RegisteredFilter(
        GopherQualityFilter, section="quality", switch_doc="Gopher quality filter on/off."
    ),
    RegisteredFilter(NonAlnumFractionFilter, after_passage_dedup=True),
    RegisteredFilter(DuplicateLinesFilter, after_passage_dedup=True),
)


def threshold_keys(filters: tuple[RegisteredFilter, ...] = FILTERS) -> tuple[str, ...]:
    """The plain filters' parameters: each a settings key of its own (`min_chars`, ...)."""
    return tuple(p.name for entry in filters if entry.section is None for p in entry.parameters)


def switch_keys(filters: tuple[RegisteredFilter, ...] = FILTERS) -> tuple[str, ...]:
    """The sectioned filters' on/off keys (`c4_lines`, `gopher_repetition`, ...)."""
    return tuple(entry.name for entry in filters if entry.section is not None)


def sections(filters: tuple[RegisteredFilter, ...] = FILTERS) -> dict[str, type]:
    """`{"c4": C4LineFilter, ...}`: the `section.field` threshold sections."""
    return {entry.section: entry.filter for entry in filters if entry.section is not None}


def filter_settings(
    profile: dict[str, dict[str, Any] | None], filters: tuple[RegisteredFilter, ...] = FILTERS
) -> dict[str, Any]:
    """A profile's `{filter name: parameters, or None for off}` as flat settings: each plain
    filter's parameters, then each sectioned filter's switch, then its configured filter.

    A plain filter must be in the profile with every parameter (it cannot be switched off, and
    its thresholds have no defaults); a sectioned one left out is off.
    """
    unknown = sorted(set(profile) - {entry.name for entry in filters})
    if unknown:
        raise ValueError(f"profile names unknown filters {unknown}")
    plain: dict[str, Any] = {}
    switches: dict[str, Any] = {}
    configured: dict[str, Any] = {}
    for entry in filters:
        params = profile.get(entry.name)
        if entry.section is None:
            names = {p.name for p in entry.parameters}
            given = {**entry.defaults(), **(params or {})}
            missing = sorted(names - set(given))
            extra = sorted(set(params or {}) - names)
            if missing or extra:
                raise ValueError(f"filter {entry.name!r}: missing {missing}, unknown {extra}")
            plain.update(given)
        else:
            switches[entry.name] = params is not None
            configured[entry.section] = entry.filter(**(params or {}))
    return {**plain, **switches, **configured}


def settings_fields(filters: tuple[RegisteredFilter, ...] = FILTERS) -> dict[str, tuple]:
    """The `cleaned_corpus` keys the filters bring, as pydantic field definitions: each plain
    filter's parameters (described and bounded by `parameter(...)`), then each sectioned
    filter's switch. All default to None: a key left unset keeps the profile's value."""
    from llm_pipeline.settings_base import setting

    fields: dict[str, tuple] = {}
    for entry in filters:
        if entry.section is None:
            hints = typing.get_type_hints(entry.filter)
            for p in entry.parameters:
                meta = p.metadata
                bounds = {"ge": meta.get("ge"), "le": meta.get("le")}
                doc = meta.get("doc", "")
                fields[p.name] = (hints[p.name] | None, setting(None, doc, **bounds))
    for entry in filters:
        if entry.section is not None:
            fields[entry.name] = (bool | None, setting(None, entry.switch_doc))
    return fields
