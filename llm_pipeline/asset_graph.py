"""The stage graph read from a set of assets: each stage's inputs, their order, their settings.

Plain functions over `AssetsDefinition`s, so every caller passes the assets it has: the CLI
the registry (`stage_assets.ASSETS`), a running step the assets of its own repository
(`context.repository_def`). No list of stages is written here or anywhere but `stage_assets.ASSETS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dagster import AssetsDefinition

from llm_pipeline.dagster_compat import asset_config_class

if TYPE_CHECKING:
    from llm_pipeline.settings_base import Stage


def upstream(assets: Sequence[AssetsDefinition]) -> dict[str, tuple[str, ...]]:
    """Each stage's inputs among `assets`, as its `deps` declare them, in `assets` order
    (Dagster keeps them as a set; messages that list them should not change between calls)."""
    names = [asset.key.to_user_string() for asset in assets]
    return {
        asset.key.to_user_string(): tuple(
            name for name in names if name in {k.to_user_string() for k in asset.dependency_keys}
        )
        for asset in assets
    }


def stage_order(assets: Sequence[AssetsDefinition]) -> tuple[str, ...]:
    """The stages upstream first (every stage after its inputs), ties in `assets` order."""
    inputs = upstream(assets)
    order: list[str] = []
    while len(order) < len(inputs):
        ready = [s for s in inputs if s not in order and set(inputs[s]) <= set(order)]
        if not ready:
            raise ValueError(f"the stages' deps form a cycle: {sorted(set(inputs) - set(order))}")
        order.append(ready[0])
    return tuple(order)


def stage_settings(assets: Sequence[AssetsDefinition]) -> dict[str, Stage]:
    """Each stage's settings (`Stage`), upstream first: the `stage` of the `Config` class its
    asset takes (assets/_config.py derives that class from the core's settings model)."""
    by_name = {asset.key.to_user_string(): asset for asset in assets}
    found = {}
    for name in stage_order(assets):
        stage = getattr(asset_config_class(by_name[name]), "stage", None)
        if stage is not None:
            found[name] = stage
    return found
