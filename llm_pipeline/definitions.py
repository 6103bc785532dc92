"""The one `Definitions` object; `workspace.yaml` and `dagster dev` load it.

The stages come from their registry (`stage_assets.ASSETS`); the asset checks are every check
defined in the `checks` package (a new check is one function there, nothing to list); the jobs,
schedules and sensors are listed here.
"""

from __future__ import annotations

from dagster import Definitions, load_asset_checks_from_package_module

from llm_pipeline import checks
from llm_pipeline.automation.executor import pipeline_executor
from llm_pipeline.automation.jobs import corpus_data_job, corpus_export_job, corpus_pipeline_job
from llm_pipeline.automation.schedules import retrain_schedule
from llm_pipeline.automation.sensors import new_corpus_sensor
from llm_pipeline.resources import StorageResource
from llm_pipeline.stage_assets import ASSETS

defs = Definitions(
    assets=list(ASSETS),
    asset_checks=load_asset_checks_from_package_module(checks),
    jobs=[corpus_data_job, corpus_pipeline_job, corpus_export_job],
    schedules=[retrain_schedule],
    sensors=[new_corpus_sensor],
    resources={"storage": StorageResource()},
    # Multiprocess with a GPU step limit, or a pod per step on Kubernetes ($LLM_PIPELINE_EXECUTOR).
    executor=pipeline_executor(),
)
