"""Dagster `Config` classes generated from the core's settings, so they cannot drift apart.

A field added to a core settings dataclass (text/, tokens/, lm/, report/ `settings.py`) shows
up here — in the launchpad, with its default and description — with no other edit. Bounds
and cross-field rules are checked by the core (run_config.check_stages) at a run's first
step, with the readable message; the schema here carries types, defaults and descriptions.
"""

from __future__ import annotations

import copy

import pydantic
from dagster import Config

from llm_pipeline.settings import Stage


def stage_config(stage: Stage, base: type[Config] = Config) -> type[Config]:
    """A `Config` subclass of `base` with one field per setting of `stage`."""
    fields = {
        spec.name: (
            spec.annotation,
            pydantic.Field(default=copy.deepcopy(spec.default), description=spec.describe()),
        )
        for spec in stage.specs
    }
    name = "".join(part.title() for part in stage.name.split("_")) + "Config"
    cls = pydantic.create_model(name, __base__=base, __doc__=stage.doc, **fields)
    cls.__module__ = base.__module__ if base is not Config else __name__
    return cls
