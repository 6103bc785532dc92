"""Settings defined once: a field's default, bounds or choices and one-line description.

The core packages declare each stage's settings as plain dataclasses whose fields come from
`setting(...)`. Everything else derives from them: the Dagster `Config` classes the launchpad
shows (assets/_config.py), the `--config` YAML check (run_config.py), the trainer's job file and
the checkpoint's `config.json` (`to_dict`). No Dagster here, so the trainer and tests use it too.

Refusals are `SettingsError`s that name the key and the bound in one line; the caller that
knows the file (or "launchpad") and the stage puts them in front.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from llm_pipeline.errors import PipelineInputError

T = TypeVar("T", bound="Settings")


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


@dataclasses.dataclass(frozen=True)
class Spec:
    """One setting: name, Python type, default, description, and the values it may take."""

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

    def check(self, value: Any) -> Any:
        """`value` if it has the right type and lies within the bounds (ints pass as floats),
        else a SettingsError naming this setting and the bound."""
        value = _check_type(self.name, self.annotation, value)
        if value is None or isinstance(value, bool):
            return value
        if self.choices is not None and value not in self.choices:
            choices = ", ".join(map(repr, self.choices))
            raise SettingsError(self.name, f"{self.name} must be one of {choices}, not {value!r}")
        if isinstance(value, int | float):
            for words, bound, ok in (
                ("greater than or equal to", self.ge, lambda v, b: v >= b),
                ("greater than", self.gt, lambda v, b: v > b),
                ("less than or equal to", self.le, lambda v, b: v <= b),
                ("less than", self.lt, lambda v, b: v < b),
            ):
                if bound is not None and not ok(value, bound):
                    raise SettingsError(
                        self.name, f"Input should be {words} {bound:g}, got {value:g}"
                    )
        return value


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
    """A dataclass field carrying its description and bounds (a list default is copied)."""
    meta = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt}
    meta["choices"] = tuple(choices) if choices is not None else None
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def specs(cls: type, exclude: Iterable[str] = ()) -> tuple[Spec, ...]:
    """The settings of a dataclass declared with `setting(...)`, in declaration order."""
    hints = typing.get_type_hints(cls)
    skip = set(exclude)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        meta = {k: f.metadata.get(k) for k in ("ge", "gt", "le", "lt", "choices")}
        out.append(Spec(f.name, hints[f.name], default, f.metadata.get("doc", ""), **meta))
    return tuple(out)


def nearest(key: str, known: Iterable[str]) -> str:
    """`did you mean n_layer?` for a near miss, else the list of valid keys."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else f"valid: {', '.join(known)}"


def unknown_key(key: str, known: Iterable[str]) -> SettingsError:
    """`unknown setting "n_layers" (did you mean n_layer?)`."""
    return SettingsError(key, f'unknown setting "{key}" ({nearest(key, known)})', unknown=True)


class Settings:
    """Mixin for settings dataclasses: strict `from_dict`, `to_dict`, bounds + rules `validate`.

    `sibling_keys` are keys of the same stage that belong to another settings class (a
    `trained_model` mapping holds both model and training keys); `from_dict` passes over
    those and refuses anything else, with the nearest valid key.
    """

    sibling_keys: typing.ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict) -> T:
        """The settings in `data`; missing keys take their defaults (an older file loads),
        unknown keys are refused rather than dropped."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key in data:
            if key not in known and key not in cls.sibling_keys:
                raise unknown_key(key, known)
        return cls(**{k: v for k, v in data.items() if k in known})

    def validate(self) -> None:
        """Raise SettingsError for a value out of its bounds or a broken cross-field rule."""
        for spec in specs(type(self)):
            spec.check(getattr(self, spec.name))
        self.check_rules()

    def check_rules(self) -> None:
        """Cross-field rules; subclasses override."""


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage's settings as users write them: `{key: value}` under the stage's name.

    `rules(given)` checks what single values cannot (a preset that exists, heads that divide
    the width, a threshold that exists) on the values given, after each passed its own bounds.
    """

    name: str
    specs: tuple[Spec, ...]
    doc: str = ""
    rules: Callable[[dict], None] | None = None
    moved: dict[str, str] = dataclasses.field(default_factory=dict)  # old key -> its new place

    def spec(self, key: str) -> Spec:
        return next(s for s in self.specs if s.name == key)

    def defaults(self) -> dict:
        return {s.name: s.default for s in self.specs}

    def check(self, given: dict) -> dict:
        """`given` checked key by key, then by the stage's rules; SettingsErrors name the key."""
        by_name = {s.name: s for s in self.specs}
        checked = {}
        for key, value in given.items():
            if key in self.moved:
                raise SettingsError(key, f"{key} moved to {self.moved[key]}", unknown=True)
            if key not in by_name:
                raise unknown_key(key, by_name)
            checked[key] = by_name[key].check(value)
        if self.rules is not None:
            self.rules(checked)
        return checked


# ------------------------------------------------------------------ types


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _check_type(key: str, annotation: Any, value: Any) -> Any:
    """`value` if it is of `annotation` (int for float allowed; bool is not a number)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(key, inner[0], value)
    wrong = SettingsError(key, f"expected {_type_name(annotation)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise wrong
        return [_check_type(key, args[0], v) for v in value] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise wrong
        return {
            _check_type(key, args[0], k): _check_type(key, args[1], v) for k, v in value.items()
        }
    if annotation is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise wrong
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise wrong
        return value
    return value
