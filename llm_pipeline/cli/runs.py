"""`llm-pipeline materialize`, `run` and `backfill`: launch the graph through the instance."""

from __future__ import annotations

import argparse
import sys
import uuid

from llm_pipeline import paths
from llm_pipeline.cli.common import dagster_instance
from llm_pipeline.cli.live import RunFollower, make_display
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.run_config import load_run_config

DEFAULT_JOB = "corpus_data_job"
PIPELINE_JOB = "corpus_pipeline_job"


def stage_settings() -> dict:
    """Each stage's settings, from the asset graph (imported on call: the assets import torch)."""
    from llm_pipeline.asset_graph import stage_settings as of_assets
    from llm_pipeline.stage_assets import ASSETS

    return of_assets(ASSETS)


def _step_failure_message(event) -> str:
    """The user-facing reason of a failed step: a Failure's description, else the error line."""
    data = event.event_specific_data
    failure = getattr(data, "user_failure_data", None)
    if failure is not None and failure.description:
        return failure.description
    error = data.error
    while error is not None and error.cause is not None and "Failure" not in error.cls_name:
        error = error.cause
    return error.message.strip() if error else "unknown error"


def materialize(args: argparse.Namespace) -> int:
    """Materialize a job's assets for one corpus in-process, through the Dagster instance."""
    name = paths.validate_corpus_name(args.corpus)
    run_config = load_run_config(args.config, stage_settings())
    instance = dagster_instance()
    from llm_pipeline.definitions import defs
    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME

    jobs = {job.name: job for job in defs.resolve_all_job_defs() if not job.name.startswith("__")}
    if args.job not in jobs:
        raise PipelineInputError(f"unknown job {args.job!r}; known: {sorted(jobs)}")
    job = jobs[args.job]
    # The run's log is shown live by `RunFollower` (a progress bar per stage in a terminal,
    # plain lines otherwise); Dagster's own console logger would only repeat it.
    run_config = {**run_config, "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    if not instance.has_dynamic_partition(CORPUS_PARTITIONS_NAME, name):
        raise PipelineInputError(
            f"corpus {name!r} is not registered; run `llm-pipeline corpus add {name} SOURCE...`"
        )
    from llm_pipeline.automation.executor import ensure_gpu_pool

    # In-process runs skip the job's executor; the pool still keeps training steps apart.
    ensure_gpu_pool(instance)
    run_id = str(uuid.uuid4())
    with make_display() as display, RunFollower(instance, run_id, display):
        result = job.execute_in_process(
            instance=instance,
            partition_key=name,
            run_config=run_config,
            raise_on_error=False,
            run_id=run_id,
        )
    failed_checks: dict[str, str] = {}
    failed_steps: list[tuple[str, str]] = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            where = mat.metadata.get("path")
            suffix = f" → {where.value}" if where is not None else ""
            print(f"materialized {mat.asset_key.to_user_string()} [{name}]{suffix}")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            status = "passed" if evaluation.passed else "FAILED"
            detail = ""
            if not evaluation.passed and evaluation.description:
                detail = f" ({evaluation.description})"
                failed_checks[evaluation.check_name] = evaluation.description
            print(f"  check {evaluation.check_name}: {status}{detail}")
        elif event.event_type_value == "STEP_FAILURE":
            failed_steps.append((event.step_key, _step_failure_message(event)))
    print(f"run {result.run_id}: {'success' if result.success else 'FAILED'}")
    for line in failure_summary(failed_steps, failed_checks):
        print(line, file=sys.stderr)
    return 0 if result.success else 1


def failure_summary(steps: list[tuple[str, str]], checks: dict[str, str]) -> list[str]:
    """The last lines of a failed run: which step failed and why, one line each, no traceback.

    A step stopped by a blocking check says so with the check's own message (its figures and
    what to try), not Dagster's "DagsterAssetCheckFailedError"."""
    lines = []
    for step, reason in steps:
        failed = [name for name in checks if name in reason]
        if failed or "AssetCheckFailed" in reason or "asset check" in reason.lower():
            for name in failed or list(checks):
                lines.append(f"FAILED {step}: check {name} failed: {checks[name]}")
            if failed or checks:
                continue
        first = reason.strip().splitlines()[0] if reason.strip() else "unknown error"
        lines.append(f"FAILED {step}: {first}")
    if not steps:
        lines += [f"FAILED check {name}: {text}" for name, text in checks.items()]
    return lines


def run_pipeline(args: argparse.Namespace) -> int:
    """Materialize the whole graph for one corpus, then print the report and headline figures."""
    args.job = PIPELINE_JOB
    status = materialize(args)
    if status != 0:
        return status
    from llm_pipeline.lm.store.checkpoint import read_config
    from llm_pipeline.lm.store.folders import CURRENT, LATEST, read_pointer, run_dir

    name = args.corpus
    run_id = read_pointer(name, LATEST)
    path = run_dir(name, run_id)
    summary = read_config(path).require_summary(path)
    current = read_pointer(name, CURRENT)
    print()
    print(f"report:        {path / 'report.html'}")
    print(f"               {path / 'report.md'}")
    print(
        f"bits per byte: {summary.val_bits_per_byte:.4f} "
        f"(unigram baseline {summary.unigram_bits_per_byte:.4f})"
    )
    print(
        f"trained:       {summary.parameters:,} parameters, {summary.tokens_seen:,} tokens "
        f"in {summary.training_seconds:.0f} s ({summary.tokens_per_s:,.0f} tokens/s)"
    )
    print(f"champion:      {current}{' (this run)' if current == run_id else ''}")
    return 0


def backfill(args: argparse.Namespace) -> int:
    """Submit a partition backfill of the graph (or of STAGE and downstream) for some corpora.

    The backfill is stored in the Dagster instance, exactly as the UI's "Materialize" dialog
    stores one: it shows on the Backfills page and the daemon (`make ui`, `dagster-daemon run`)
    launches its runs. Everything is checked first, so a typo submits nothing.
    """
    from llm_pipeline.cli.overview import pipeline_stages

    if args.all == bool(args.corpus):
        raise PipelineInputError("give either --corpus NAME[,NAME...] or --all")
    pipeline_assets = pipeline_stages()
    args.stage = args.stage or pipeline_assets[0]
    if args.stage not in pipeline_assets:
        raise PipelineInputError(
            f"unknown stage {args.stage!r}; stages: {', '.join(pipeline_assets)}"
        )
    run_config = load_run_config(args.config, stage_settings())
    instance = dagster_instance()
    from dagster import AssetKey, AssetSelection

    from llm_pipeline.dagster_compat import submit_asset_backfill
    from llm_pipeline.definitions import defs
    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME

    registered = set(instance.get_dynamic_partitions(CORPUS_PARTITIONS_NAME))
    if args.all:
        corpora = sorted(registered)
        if not corpora:
            raise PipelineInputError(
                "no corpora registered; add one with `llm-pipeline corpus add`"
            )
    else:
        corpora = [paths.validate_corpus_name(n.strip()) for n in args.corpus.split(",")]
        unknown = [name for name in corpora if name not in registered]
        if unknown:
            known = ", ".join(sorted(registered)) or "none"
            raise PipelineInputError(
                f"unknown corpus {', '.join(map(repr, unknown))} (registered: {known}); "
                "add it with `llm-pipeline corpus add NAME SOURCE...`; nothing was submitted"
            )
        corpora = list(dict.fromkeys(corpora))
    asset_graph = defs.resolve_asset_graph()
    selected = AssetSelection.assets(args.stage).downstream().resolve(asset_graph) & {
        AssetKey(name) for name in pipeline_assets
    }
    submitted = submit_asset_backfill(
        instance,
        asset_graph=asset_graph,
        partition_names=corpora,
        asset_selection=sorted(selected, key=lambda key: pipeline_assets.index(key.path[-1])),
        tags={"llm_pipeline/source": "cli"},
        title=f"llm-pipeline backfill from {args.stage}",
        description=f"corpora: {', '.join(corpora)}",
        run_config=run_config or None,
    )
    backfill_id = submitted.backfill_id
    stages = ", ".join(key.path[-1] for key in submitted.asset_selection)
    print(
        f"backfill {backfill_id}: {len(corpora)} corpora ({', '.join(corpora)}); assets: {stages}"
    )
    print("  runs are launched by the Dagster daemon (`make ui` starts one); follow it in the UI")
    print(f"  under Overview → Backfills, or at /runs/b/{backfill_id}")
    return 0
