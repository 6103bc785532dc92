"""Settings defined once: each stage's settings are one pydantic model in the core.

A field's default, bounds or choices and one-line description are written once, with
`setting(...)`, on the stage's model (text/, tokens/, lm/, report/ `settings.py`). Everything
else derives from that model: the Dagster `Config` the launchpad shows (assets/_config.py), the
`--config` YAML check (run_config.py), the trainer's job file (the model's JSON, read back into
the same model), the checkpoint's `config.json`, the schedule's comparison and the generated
configuration reference of the docs. No Dagster here, so the trainer and the tests use it too.

Validation is pydantic's, strict (a string is not a number, "yes" is not a bool), with two
allowances a YAML file needs: a whole float (`3.0`) passes as an int and a tuple as a list.
Refusals are `SettingsError`s that name the key and the bound in one line; the caller that
knows the file (or "launchpad") and the stage puts them in front.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Self

import annotated_types
import pydantic

from llm_pipeline.errors import PipelineInputError


class SettingsError(PipelineInputError):
    """A setting refused before anything runs: `key` is the setting, `problem` the bound."""

    def __init__(
        self, key: str, problem: str, where: str = "", stage: str = "", unknown: bool = False
    ) -> None:
        self.key, self.problem, self.where, self.stage, self.unknown = (
            key,
            problem,
            where,
            stage,
            unknown,
        )
        super().__init__(self._message())

    def _message(self) -> str:
        # `my.yaml: invalid settings: trained_model.n_layers: unknown setting "n_layers" (...)`
        # `my.yaml: trained_model: n_embd: 130 must be divisible by n_head (4)`
        parts = [self.where] if self.where else []
        if self.unknown:
            parts.append("invalid settings")
            parts.append(".".join(p for p in (self.stage, self.key) if p))
        else:
            parts += [p for p in (self.stage, self.key) if p]
        return ": ".join([*parts, self.problem])

    def located(self, where: str, stage: str = "") -> SettingsError:
        """The same refusal, prefixed with the file (or "launchpad") and the stage."""
        return SettingsError(self.key, self.problem, where, stage or self.stage, self.unknown)


def setting(
    default: Any,
    doc: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Iterable | None = None,
) -> Any:
    """A model field carrying its description and bounds (a list or dict default is copied)."""
    extra = {"choices": list(choices)} if choices is not None else None
    bounds = {"ge": ge, "gt": gt, "le": le, "lt": lt}
    if isinstance(default, list | dict):
        return pydantic.Field(
            default_factory=lambda: type(default)(default),
            description=doc,
            json_schema_extra=extra,
            **bounds,
        )
    return pydantic.Field(default=default, description=doc, json_schema_extra=extra, **bounds)


@dataclasses.dataclass(frozen=True)
class Spec:
    """One setting as the launchpad, the CLI and the docs show it (derived from a model field)."""

    name: str
    annotation: Any
    default: Any
    doc: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None

    def bounds_text(self) -> str:
        """The bounds as a person writes them: `≥ 1`, `in (0, 1)`, `one of gpt, gru`."""
        parts = []
        for op, bound in (("≥", self.ge), (">", self.gt), ("≤", self.le), ("<", self.lt)):
            if bound is not None:
                parts.append(f"{op} {bound:g}")
        if self.choices is not None:
            parts.append(
                "one of " + ", ".join(repr(c) if c == "" else str(c) for c in self.choices)
            )
        return ", ".join(parts)

    def describe(self) -> str:
        """The description shown in the launchpad: the one-liner plus the bounds."""
        bounds = self.bounds_text()
        return f"{self.doc} ({bounds})" if bounds else self.doc


_BOUNDS = {
    annotated_types.Ge: "ge",
    annotated_types.Gt: "gt",
    annotated_types.Le: "le",
    annotated_types.Lt: "lt",
}


def _spec(name: str, field: Any) -> Spec:
    bounds = {}
    for item in field.metadata:
        for kind, key in _BOUNDS.items():
            if isinstance(item, kind):
                bounds[key] = getattr(item, key)
    choices = _choices(field)
    default = field.get_default(call_default_factory=True)
    return Spec(name, field.annotation, default, field.description or "", choices=choices, **bounds)


def _choices(field: Any) -> tuple | None:
    """The values a field may take, as `setting(choices=...)` declared them, or None."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return tuple(extra["choices"]) if extra.get("choices") is not None else None


def nearest(key: str, known: Iterable[str]) -> str:
    """`did you mean n_layer?` for a near miss, else the list of valid keys."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else f"valid: {', '.join(known)}"


def unknown_key(key: str, known: Iterable[str]) -> SettingsError:
    """`unknown setting "n_layers" (did you mean n_layer?)`."""
    return SettingsError(key, f'unknown setting "{key}" ({nearest(key, known)})', unknown=True)


class Settings(pydantic.BaseModel):
    """Base of every stage's settings model: strict types, no unknown keys, readable refusals.

    Build one with `from_dict` (or the constructor, which raises pydantic's own error); the
    instance is valid by construction. `check_rules` holds what single fields cannot say (heads
    that divide the width); it raises a SettingsError naming the key.
    """

    model_config = pydantic.ConfigDict(strict=True, extra="forbid", validate_assignment=True)

    @classmethod
    def specs(cls, exclude: Iterable[str] = ()) -> tuple[Spec, ...]:
        """The settings of this model, in declaration order."""
        skip = set(exclude)
        return tuple(
            _spec(name, field) for name, field in cls.model_fields.items() if name not in skip
        )

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        """The settings in `data`; missing keys take their defaults (an older file loads),
        unknown keys are refused with the nearest valid one, a bad value with its bound."""
        for key in data:
            if key not in cls.model_fields:
                raise unknown_key(key, cls.model_fields)
        try:
            return cls.model_validate(data)
        except pydantic.ValidationError as exc:
            raise _readable(exc, cls) from None

    @classmethod
    def fields_of(cls, settings: Settings) -> dict[str, Any]:
        """This model's fields taken from `settings` (an instance of it or of a model built on
        it): the checkpoint records its `model` and `training` blocks this way."""
        return {name: getattr(settings, name) for name in cls.model_fields}

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes`, validated like any other instance."""
        return type(self).from_dict({**self.model_dump(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-able values (what job files and `config.json` hold)."""
        return self.model_dump(mode="json")

    def check_rules(self) -> None:
        """Cross-field rules; subclasses override (and call their bases' rules)."""

    @pydantic.model_validator(mode="before")
    @classmethod
    def _yaml_allowances(cls, data: Any) -> Any:
        # A YAML `3.0` for an int and a tuple for a list are what the user meant.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, field in cls.model_fields.items():
            if name not in data:
                continue
            value, annotation = data[name], _without_none(field.annotation)
            if annotation is int and isinstance(value, float) and value.is_integer():
                data[name] = int(value)
            elif typing.get_origin(annotation) is list and isinstance(value, tuple):
                data[name] = list(value)
        return data

    @pydantic.model_validator(mode="after")
    def _choices_and_rules(self) -> Self:
        for name, field in type(self).model_fields.items():
            choices = _choices(field)
            value = getattr(self, name)
            if choices is not None and value is not None and value not in choices:
                listed = ", ".join(map(repr, choices))
                raise SettingsError(name, f"{name} must be one of {listed}, not {value!r}")
        self.check_rules()
        return self


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner[0] if len(inner) == 1 else annotation
    return annotation


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _readable(exc: pydantic.ValidationError, model: type[Settings]) -> SettingsError:
    """The first error of a pydantic refusal as one line naming the key and the bound."""
    error = exc.errors()[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, SettingsError):
        return SettingsError(cause.key, cause.problem, unknown=cause.unknown)
    loc = [str(part) for part in error["loc"]]
    key = loc[0] if loc else ""
    value = error.get("input")
    kind = error["type"]
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return SettingsError(key, f"{error['msg']}, got {value:g}")
    if (kind.endswith("_type") or kind.endswith("_parsing")) and key in model.model_fields:
        # pydantic's message names only the leaf type; the declared one reads better.
        annotation = _without_none(model.model_fields[key].annotation)
        return SettingsError(key, f"expected {_type_name(annotation)}, got {value!r}")
    return SettingsError(key, error["msg"])


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage's settings as users write them: `{key: value}` under the stage's name.

    `model` is the stage's settings model; `exclude` lists its fields that come from another
    stage (the vocabulary, from the tokenizer) and are not the user's to set; `rules(settings)`
    checks what depends on this machine (devices for the trainer processes); `moved` maps an old
    key to where it went, so it is refused with that instead of "unknown".
    """

    name: str
    model: type[Settings]
    doc: str = ""
    exclude: tuple[str, ...] = ()
    rules: Callable[[Any], None] | None = None
    moved: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def specs(self) -> tuple[Spec, ...]:
        return self.model.specs(exclude=self.exclude)

    def settings(self, given: dict, upstream: dict | None = None) -> Settings:
        """The stage's settings model from the keys a user gave, every rule checked.
        `upstream` holds the excluded fields, decided by another stage."""
        known = {s.name for s in self.specs}
        for key in given:
            if key in self.moved:
                raise SettingsError(key, f"{key} moved to {self.moved[key]}", unknown=True)
            if key not in known:
                raise unknown_key(key, known)
        values = {**given, **(upstream or {})}
        resolve = getattr(self.model, "resolve", None)
        settings = resolve(values) if resolve is not None else self.model.from_dict(values)
        if self.rules is not None:
            self.rules(settings)
        return settings

    def check(self, given: dict) -> dict:
        """`given` checked (as `settings` does), in the types the model holds (3.0 → 3)."""
        settings = self.settings(given)
        return {key: getattr(settings, key) for key in given}
