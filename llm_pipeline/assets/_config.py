"""Dagster `Config` classes derived from the core's settings models, so they cannot drift apart.

A field added to a stage's settings model (text/, tokens/, lm/, report/ `settings.py`) shows up
here — in the launchpad, with its default and description — with no other edit. Bounds and
cross-field rules are the model's: they are checked at a run's first step for every stage
(run_config.check_stages, with the readable message), and `settings()` turns a launchpad config
back into the core model the stage runs with.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import pydantic
from dagster import Config

from llm_pipeline.settings_base import Settings, Stage


class StageConfig(Config):
    """Base of the derived classes: `stage` is the core stage they show."""

    stage: ClassVar[Stage]

    def given(self) -> dict[str, Any]:
        """The keys set in the launchpad (or run config); fields Dagster filled with their
        defaults are not "given", so a preset still fills them."""
        return {key: getattr(self, key) for key in self.model_fields_set}

    def settings(self, **upstream: Any) -> Settings:
        """The core settings model of the given keys, every rule checked. `upstream` carries
        values another stage decides (the tokenizer's vocabulary)."""
        return self.stage.settings(self.given(), upstream)


def stage_config(stage: Stage, base: type[Config] = StageConfig) -> type[Config]:
    """A `Config` subclass of `base` with one field per setting of `stage`."""
    fields: dict[str, Any] = {
        spec.name: (
            spec.annotation,
            pydantic.Field(default=copy.deepcopy(spec.default), description=spec.describe()),
        )
        for spec in stage.specs
    }
    name = "".join(part.title() for part in stage.name.split("_")) + "Config"
    cls = pydantic.create_model(name, __base__=base, __doc__=stage.doc, **fields)
    cls.__module__ = base.__module__ if base is not StageConfig else __name__
    cls.stage = stage
    return cls
