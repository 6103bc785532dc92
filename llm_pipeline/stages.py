"""The stages, listed once: the asset graph every other list of stages is read from.

`definitions.py` registers `ASSETS`; the CLI's overview (`corpus list`, `status`, `backfill`)
reads the order and each stage's inputs from the assets' own `deps`, and which stages run on
request only from the jobs (`automation/jobs.py`), so a stage added here appears everywhere
with no other list to edit. Dagster shell: the core never imports this.

Adding a stage: its settings (a `Stage` in the core's `*/settings.py`, listed in
`run_config.STAGES`), its asset module under `assets/` (`deps=[...]` names its inputs), and
one line in `ASSETS`. `test_registries.py` fails if `run_config.STAGES` lags behind.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import AssetsDefinition

from llm_pipeline.assets.cleaned import cleaned_corpus
from llm_pipeline.assets.export import exported_model
from llm_pipeline.assets.model import trained_model
from llm_pipeline.assets.raw import raw_corpus
from llm_pipeline.assets.report import evaluation_report
from llm_pipeline.assets.tokens import token_shards, tokenizer

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
