"""The stages, listed once: the asset graph every other list of stages is read from.

`definitions.py` registers `ASSETS`; the CLI's overview (`corpus list`, `status`, `backfill`)
reads the order and each stage's inputs from the assets' own `deps`, and which stages run on
request only from the jobs (`automation/jobs.py`), so a stage added here appears everywhere
with no other list to edit. Dagster shell: the core never imports this.

The run-config check reads each stage's settings from here too (`stage_settings`: the `Stage`
behind the asset's derived `Config`), so adding a stage is its settings (a `Stage` in the
core's `*/settings.py`), its asset module under `assets/` (`deps=[...]` names its inputs, its
`config` is `stage_config(STAGE)`), and one line in `ASSETS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dagster import AssetsDefinition

from llm_pipeline.assets.cleaned import cleaned_corpus
from llm_pipeline.assets.export import exported_model
from llm_pipeline.assets.model import trained_model
from llm_pipeline.assets.raw import raw_corpus
from llm_pipeline.assets.report import evaluation_report
from llm_pipeline.assets.tokens import token_shards, tokenizer
from llm_pipeline.dagster_compat import asset_config_class

if TYPE_CHECKING:
    from llm_pipeline.settings import Stage

# One line per stage; the order only breaks ties between stages the graph leaves unordered.
ASSETS: tuple[AssetsDefinition, ...] = (
    raw_corpus,
    cleaned_corpus,
    tokenizer,
    token_shards,
    trained_model,
    evaluation_report,
    exported_model,
)


def upstream(assets: Sequence[AssetsDefinition] = ASSETS) -> dict[str, tuple[str, ...]]:
    """Each stage's inputs among `assets`, as its `deps` declare them, in `assets` order
    (Dagster keeps them as a set; messages that list them should not change between calls)."""
    names = [asset.key.to_user_string() for asset in assets]
    return {
        asset.key.to_user_string(): tuple(
            name for name in names if name in {k.to_user_string() for k in asset.dependency_keys}
        )
        for asset in assets
    }


def stage_order(assets: Sequence[AssetsDefinition] = ASSETS) -> tuple[str, ...]:
    """The stages upstream first (every stage after its inputs), ties in `assets` order."""
    inputs = upstream(assets)
    order: list[str] = []
    while len(order) < len(inputs):
        ready = [s for s in inputs if s not in order and set(inputs[s]) <= set(order)]
        if not ready:
            raise ValueError(f"the stages' deps form a cycle: {sorted(set(inputs) - set(order))}")
        order.append(ready[0])
    return tuple(order)


def stage_settings(assets: Sequence[AssetsDefinition] = ASSETS) -> dict[str, Stage]:
    """Each stage's settings (`Stage`), upstream first: the `stage` of the `Config` class its
    asset takes (assets/_config.py derives that class from the core's settings model)."""
    by_name = {asset.key.to_user_string(): asset for asset in assets}
    found = {}
    for name in stage_order(assets):
        stage = getattr(asset_config_class(by_name[name]), "stage", None)
        if stage is not None:
            found[name] = stage
    return found
