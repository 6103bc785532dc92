"""The configuration reference as Markdown, rendered from the settings themselves.

The docs site's configuration page (`docs/configuration.md`) is filled in at build time by a
MkDocs hook (`docs/hooks/settings_reference.py`) with `settings_reference_markdown()`, so the
reference cannot drift from the code: a setting added, renamed or re-bounded in a stage's
settings shows up in the next `mkdocs build`. No Dagster here: the hook runs in the docs build,
which should not need an instance or the asset definitions.

Only the stages' public interface is read (`STAGES[name]`: `name`, `doc`, `specs`, `moved`;
each spec's `name`, `annotation`, `default`, `doc` and `bounds_text()`), plus the presets and
the cleaning profiles, each through one function, so a change of their shape touches one place.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any


def settings_reference_markdown() -> str:
    """Every stage's settings, the training presets and the cleaning profiles, as Markdown.

    Headings start at level 2 (`##` per stage), so the page that includes it keeps its title.
    """
    from llm_pipeline.asset_graph import stage_settings
    from llm_pipeline.stage_assets import ASSETS

    parts = [stage_markdown(stage) for stage in stage_settings(ASSETS).values()]
    parts.append(presets_markdown())
    parts.append(profiles_markdown())
    return "\n\n".join(parts) + "\n"


def stage_markdown(stage: Any) -> str:
    """One stage: its heading, its one-line description, a table of its settings, and the
    keys that moved elsewhere (a config that still has them is refused with that message)."""
    rows = [
        (
            f"`{spec.name}`",
            _type_text(spec.annotation),
            _value_text(spec.default),
            _cell(spec.bounds_text()),
            _cell(spec.doc),
        )
        for spec in stage.specs
    ]
    lines = [f"## {stage.name}", ""]
    if stage.doc:
        lines += [_text(stage.doc), ""]
    lines.append(_table(("setting", "type", "default", "allowed", "what it does"), rows))
    if stage.moved:
        lines += [
            "",
            "Keys that moved (a config that still uses them is refused, naming the new place):",
            "",
        ]
        lines += [f"- `{old}` → {_text(new)}" for old, new in stage.moved.items()]
    return "\n".join(lines)


def presets_markdown() -> str:
    """The `trained_model.preset` values: which setting each one fills (explicit keys win)."""
    from llm_pipeline.lm.settings import PRESETS

    return _matrix(
        "## Presets",
        "`trained_model: {preset: NAME}` fills every setting below that the config does not "
        "give itself; a blank cell means the preset leaves that setting at its default.",
        {
            name: preset.model_dump(include=preset.model_fields_set)
            for name, preset in PRESETS.items()
        },
    )


def profiles_markdown() -> str:
    """The `cleaned_corpus.profile` values: each profile's filter switches and thresholds.

    Filter sections (the C4, Gopher repetition and Gopher quality filters' settings) are
    flattened to `section.field`, the form `cleaned_corpus.thresholds` takes.
    """
    from llm_pipeline.text.filters.profiles import PROFILE_SETTINGS

    flat = {name: dict(_flatten(values)) for name, values in PROFILE_SETTINGS.items()}
    return _matrix(
        "## Cleaning profiles",
        "`cleaned_corpus: {profile: NAME}` picks these values; a `cleaned_corpus` setting "
        "given in the config wins, and a `section.field` row can be changed through "
        '`cleaned_corpus.thresholds` (e.g. `{"quality.min_stop_words": 1}`). '
        "0 (or 1.0 for a maximum fraction) turns a rule off.",
        flat,
    )


# ------------------------------------------------------------------ rendering


def _matrix(heading: str, intro: str, columns: Mapping[str, Mapping[str, Any]]) -> str:
    """A table with one row per setting and one column per named set of values."""
    keys: list[str] = []
    for values in columns.values():
        keys += [k for k in values if k not in keys]
    rows = [
        (f"`{key}`", *(_value_text(v[key]) if key in v else "" for v in columns.values()))
        for key in keys
    ]
    header = ("setting", *(f"`{name}`" for name in columns))
    return "\n".join([heading, "", intro, "", _table(header, rows)])


def _flatten(values: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """Plain settings as they are; a filter's settings (a dataclass) as `section.field`."""
    for key, value in values.items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for field in dataclasses.fields(value):
                if field.name != "name":  # the filter's own name, not a threshold
                    yield f"{key}.{field.name}", getattr(value, field.name)
        else:
            yield key, value


def _table(header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _type_text(annotation: Any) -> str:
    """`int`, `list[str]`, `float or null` (a `| None` would split the table's cell)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        text = " or ".join(_type_text(a).strip("`") for a in inner)
        return f"`{text} or null`" if type(None) in args else f"`{text}`"
    if origin is not None:
        inner = ", ".join(_type_text(a).strip("`") for a in args)
        return f"`{getattr(origin, '__name__', str(origin))}[{inner}]`"
    return f"`{getattr(annotation, '__name__', None) or str(annotation)}`"


def _value_text(value: Any) -> str:
    """A value as it is written in the YAML config: `true`, `""`, `[]`, `0.002`; `null` for
    "unset" (for `cleaned_corpus`, unset means the profile's value)."""
    if isinstance(value, tuple):
        value = [list(v) if isinstance(v, tuple) else v for v in value]
    text = json.dumps(value, ensure_ascii=False)
    # Inside a code span `<` is literal and a `|` does not end the table's cell.
    return f"`{text}`"


def _text(text: str) -> str:
    """Prose from a docstring as Markdown text: `<|endoftext|>` must not read as an HTML tag."""
    return text.replace("<", "&lt;")


def _cell(text: str) -> str:
    """Text safe inside a table cell: a `|` would end the cell."""
    return _text(text).replace("|", "\\|")
