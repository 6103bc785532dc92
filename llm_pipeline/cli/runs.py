"""`llm-pipeline materialize`, `run` and `backfill`: launch the graph through the instance."""

from __future__ import annotations

import argparse
import sys
import uuid
from dataclasses import dataclass, field

from llm_pipeline import paths
from llm_pipeline.cli.common import dagster_instance, did_you_mean, unknown_corpus
from llm_pipeline.cli.failures import failed_run_lines, failure_summary, step_failure_message
from llm_pipeline.cli.live import RunFollower, make_display
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.run_config import load_run_config

__all__ = ["backfill", "execute", "failure_summary", "materialize", "run_pipeline"]

DEFAULT_JOB = "corpus_data_job"
PIPELINE_JOB = "corpus_pipeline_job"


def registered_corpus(instance, name: str) -> str:
    """`name` if it is a registered corpus, else the error with a "did you mean"."""
    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME

    name = paths.validate_corpus_name(name)
    if not instance.has_dynamic_partition(CORPUS_PARTITIONS_NAME, name):
        raise unknown_corpus(name, instance.get_dynamic_partitions(CORPUS_PARTITIONS_NAME))
    return name


@dataclass
class RunOutcome:
    """What a run did: success, the assets it materialized, and the checks that failed."""

    success: bool
    materialized: list[str] = field(default_factory=list)
    failed_checks: dict[str, str] = field(default_factory=dict)


def execute(
    instance, job_name: str, name: str, run_config: dict, selection: list[str] | None = None
) -> RunOutcome:
    """Run `job_name` (or its `selection` of assets, with their checks) for corpus `name`
    in-process, following its log live; print what was made, the checks, and on failure the
    root cause first, one line of advice, then what was skipped because of it."""
    from dagster import AssetKey

    from llm_pipeline.automation.executor import ensure_gpu_pool
    from llm_pipeline.definitions import defs

    jobs = {job.name: job for job in defs.resolve_all_job_defs() if not job.name.startswith("__")}
    if job_name not in jobs:
        raise PipelineInputError(f"unknown job {job_name!r}; known: {sorted(jobs)}")
    # The run's log is shown live by `RunFollower` (a progress bar per stage in a terminal,
    # plain lines otherwise); Dagster's own console logger would only repeat it.
    run_config = {**run_config, "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    # In-process runs skip the job's executor; the pool still keeps training steps apart.
    ensure_gpu_pool(instance)
    run_id = str(uuid.uuid4())
    keys = [AssetKey(asset) for asset in selection] if selection is not None else None
    with make_display() as display, RunFollower(instance, run_id, display) as follower:
        result = jobs[job_name].execute_in_process(
            instance=instance,
            partition_key=name,
            run_config=run_config,
            raise_on_error=False,
            run_id=run_id,
            asset_selection=keys,
        )
    outcome = RunOutcome(result.success)
    failed_steps: list[tuple[str, str]] = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            where = mat.metadata.get("path")
            suffix = f" → {where.value}" if where is not None else ""
            outcome.materialized.append(mat.asset_key.to_user_string())
            print(f"materialized {mat.asset_key.to_user_string()} [{name}]{suffix}")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            status = "passed" if evaluation.passed else "FAILED"
            detail = ""
            if not evaluation.passed and evaluation.description:
                detail = f" ({evaluation.description})"
            if not evaluation.passed and evaluation.severity.value == "ERROR":
                # A warning (split_ngram_overlap) is shown but fails nothing.
                outcome.failed_checks[evaluation.check_name] = evaluation.description or ""
            print(f"  check {evaluation.check_name}: {status}{detail}")
        elif event.event_type_value == "STEP_FAILURE":
            failed_steps.append((event.step_key, step_failure_message(event)))
    print(f"run {result.run_id}: {'success' if result.success else 'FAILED'}")
    if not result.success:
        lines = failed_run_lines(failed_steps, outcome.failed_checks, follower.skipped, name)
        for line in lines:
            print(line, file=sys.stderr)
    return outcome


def materialize(args: argparse.Namespace) -> int:
    """Materialize a job's assets for one corpus in-process, through the Dagster instance."""
    paths.validate_corpus_name(args.corpus)
    from llm_pipeline.stage_assets import registered_settings  # imports the assets

    run_config = load_run_config(args.config, registered_settings())
    instance = dagster_instance()
    name = registered_corpus(instance, args.corpus)
    return 0 if execute(instance, args.job, name, run_config).success else 1


def run_pipeline(args: argparse.Namespace) -> int:
    """Materialize what is missing or stale in the graph of one corpus (`cli/plan.py`; all of
    it with `--force`, STAGE and after with `--from`), then print the report's headline."""
    from llm_pipeline.cli.plan import plan_run

    paths.validate_corpus_name(args.corpus)
    from llm_pipeline.stage_assets import registered_settings  # imports the assets

    run_config = load_run_config(args.config, registered_settings())
    instance = dagster_instance()
    name = registered_corpus(instance, args.corpus)
    plan = plan_run(instance, name, run_config, getattr(args, "stage", None), args.force)
    for line in plan.describe():
        print(line)
    if not plan.run:
        print("nothing to run: every stage is up to date (`--from STAGE` or `--force` reruns)")
        print_headline(name, None)
        return 0
    outcome = execute(instance, PIPELINE_JOB, name, run_config, list(plan.run))
    if "evaluation_report" in outcome.materialized:
        print_headline(name, outcome.failed_checks)
    return 0 if outcome.success and not outcome.failed_checks else 1


def print_headline(name: str, failed_checks: dict[str, str] | None) -> None:
    """The newest model's report and figures, and the champion; a model that failed its checks
    says so (its report says it at the top, and it was not promoted)."""
    from llm_pipeline.lm.store.checkpoint import read_config
    from llm_pipeline.lm.store.folders import CURRENT, LATEST, read_pointer, run_dir

    run_id = read_pointer(name, LATEST)
    if run_id is None:
        return
    path = run_dir(name, run_id)
    summary = read_config(path).summary
    current = read_pointer(name, CURRENT)
    print()
    print(f"report:        {path / 'report.html'}")
    print(f"               {path / 'report.md'}")
    if summary is not None:
        print(
            f"bits per byte: {summary.val_bits_per_byte:.4f} "
            f"(unigram baseline {summary.unigram_bits_per_byte:.4f})"
        )
        print(
            f"trained:       {summary.parameters:,} parameters, {summary.tokens_seen:,} tokens "
            f"in {summary.training_seconds:.0f} s ({summary.tokens_per_s:,.0f} tokens/s)"
        )
    if failed_checks:
        print(f"FAILED checks: {', '.join(failed_checks)}: not promoted (see the report's top)")
    print(f"champion:      {current}{' (this run)' if current == run_id else ''}")


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
    from llm_pipeline.stage_assets import registered_settings  # imports the assets

    run_config = load_run_config(args.config, registered_settings())
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
            hints = "".join(did_you_mean(name, registered) for name in unknown)
            raise PipelineInputError(
                f"unknown corpus {', '.join(map(repr, unknown))} (registered: {known}){hints}; "
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
