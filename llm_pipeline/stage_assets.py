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

import functools
from typing import TYPE_CHECKING

from dagster import AssetsDefinition

from llm_pipeline.asset_graph import stage_settings
from llm_pipeline.assets.cleaned import cleaned_corpus
from llm_pipeline.assets.export import exported_model
from llm_pipeline.assets.model import trained_model
from llm_pipeline.assets.raw import raw_corpus
from llm_pipeline.assets.report import evaluation_report
from llm_pipeline.assets.tokens import token_shards, tokenizer

if TYPE_CHECKING:
    from llm_pipeline.settings_base import Stage

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


@functools.cache
def registered_settings() -> dict[str, Stage]:
    """Each registered stage's settings, upstream first: what the CLI checks a run config with
    (read once: `ASSETS` does not change while the process runs)."""
    return stage_settings(ASSETS)
