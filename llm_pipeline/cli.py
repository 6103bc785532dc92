"""The `llm-pipeline` command: register corpora, list them, materialize the graph for one.

Everything goes through the Dagster instance in `$DAGSTER_HOME`, so what the CLI does shows up
in the UI (runs, partitions, materializations) exactly as if it had been launched there.
"""

from __future__ import annotations

import argparse
import filecmp
import glob
import http.client
import os
import shutil
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from llm_pipeline import paths
from llm_pipeline.atomic import atomic_path
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.text.builtin import BUILTIN_CORPUS, write_builtin_corpus

DATA_ASSETS = ("raw_corpus", "cleaned_corpus", "tokenizer", "token_shards")
DEFAULT_JOB = "corpus_data_job"
PIPELINE_JOB = "corpus_pipeline_job"


def _instance():
    """The Dagster instance; `$DAGSTER_HOME` defaults to `.dagster_home/` in the project."""
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(paths.project_root() / ".dagster_home")
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        # An explicit (empty-ish) instance config silences Dagster's first-run banner.
        settings.write_text("telemetry:\n  enabled: false\n")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from dagster import DagsterInstance

    return DagsterInstance.get()


def _format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _url_file_name(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name or name in (".", "..") or name.startswith("."):
        raise PipelineInputError(f"{url}: cannot take a safe file name from the URL ({name!r})")
    return name


def _download(url: str, dest_dir: Path, force: bool) -> Path | None:
    """Download `url` into `dest_dir` with a progress bar; None if an identical file is there."""
    dest = dest_dir / _url_file_name(url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_path(dest) as tmp:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            with open(tmp, "wb") as out:
                while block := response.read(1 << 16):
                    out.write(block)
                    done += len(block)
                    shown = f" / {_format_bytes(total)} {100 * done / total:5.1f}%" if total else ""
                    print(f"\r  {dest.name}: {_format_bytes(done)}{shown}", end="", file=sys.stderr)
            print(file=sys.stderr)
            if total and done != total:
                raise PipelineInputError(
                    f"{url}: download incomplete ({done} of {total} bytes); nothing was saved"
                )
            if dest.exists() and filecmp.cmp(tmp, dest, shallow=False):
                return None
            if dest.exists() and not force:
                raise PipelineInputError(
                    f"{dest} already exists with different content (use --force to replace it)"
                )
    except (OSError, http.client.HTTPException) as exc:
        raise PipelineInputError(f"{url}: download failed ({exc})") from None
    return dest


def _copy_file(src: Path, dest: Path, force: bool) -> bool:
    """Copy atomically; identical files are left alone, different ones need --force."""
    if dest.exists():
        if filecmp.cmp(src, dest, shallow=False):
            return False
        if not force:
            raise PipelineInputError(
                f"{dest} already exists with different content (use --force to replace it)"
            )
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return True


def _folder_files(folder: Path) -> list[Path]:
    """Regular files under `folder`, without following symlinks and without hidden entries.

    A symlink inside a folder could pull any file on the machine into the training data (and
    from there into a model), so links are skipped with a warning; name a file directly to add it.
    """
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_symlink():
            print(f"warning: skipped symlink {path} (name its target directly)", file=sys.stderr)
        elif path.is_file() and not any(p.is_symlink() for p in rel.parents if p != Path(".")):
            files.append(path)
    return files


def place_sources(sources: list[str], dest_dir: Path, force: bool = False) -> list[Path]:
    """Copy files, folders (their contents), globs and http(s) URLs into a corpus folder."""
    placed: list[Path] = []
    dest_dir.mkdir(parents=True, exist_ok=True)
    for source in sources:
        if source.startswith(("http://", "https://")):
            downloaded = _download(source, dest_dir, force)
            if downloaded is not None:
                placed.append(downloaded)
            continue
        matches = sorted(glob.glob(source)) if glob.has_magic(source) else [source]
        if not matches:
            raise PipelineInputError(f"{source}: no such file or folder (or no glob match)")
        for match in matches:
            path = Path(match)
            if path.is_dir():
                for file in _folder_files(path):
                    dest = dest_dir / file.relative_to(path)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if _copy_file(file, dest, force):
                        placed.append(dest)
            elif path.is_file():
                dest = dest_dir / path.name
                if _copy_file(path, dest, force):
                    placed.append(dest)
            else:
                raise PipelineInputError(f"{source}: no such file or folder")
    return placed


def corpus_add(args: argparse.Namespace) -> int:
    name = paths.validate_corpus_name(args.name)
    folder = paths.raw_dir(name)
    if args.builtin:
        if args.sources:
            raise PipelineInputError("--builtin takes no SOURCE: the corpus is built, not copied")
        if name != BUILTIN_CORPUS:
            raise PipelineInputError(f"--builtin is only for {BUILTIN_CORPUS!r}, not {name!r}")
        if args.if_missing and any(folder.glob("*.jsonl")):
            print(f"corpus {name}: already present in {folder}")
        else:
            print(f"corpus {name}: extracting standard-library docstrings (no download) …")
            counts = write_builtin_corpus(folder)
            print(f"  {counts['documents']} docstrings, {_format_bytes(counts['bytes'])}")
    elif args.sources:
        placed = place_sources(args.sources, folder, force=args.force)
        print(f"corpus {name}: {len(placed)} file(s) placed in {folder}")
    elif not (args.if_missing and folder.is_dir()):
        raise PipelineInputError("give at least one SOURCE (file, folder, glob or URL)")
    instance = _instance()
    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME

    if not instance.has_dynamic_partition(CORPUS_PARTITIONS_NAME, name):
        instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, [name])
        print(f"corpus {name}: registered as a partition in {os.environ['DAGSTER_HOME']}")
    return 0


def corpus_list(args: argparse.Namespace) -> int:
    instance = _instance()
    from dagster import AssetKey

    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME

    names = instance.get_dynamic_partitions(CORPUS_PARTITIONS_NAME)
    materialized = {
        asset: instance.get_materialized_partitions(AssetKey(asset)) for asset in DATA_ASSETS
    }
    if not names:
        print("no corpora registered; try `llm-pipeline corpus add python-stdlib-docs --builtin`")
        return 0
    print(f"{'corpus':<32} {'files':>6} {'size':>10}  materialized")
    for name in sorted(names):
        try:
            folder = paths.raw_dir(name)
        except PipelineInputError:
            print(f"{name!r:<32} invalid corpus name: ignored (delete this partition in the UI)")
            continue
        files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
        size = sum(p.stat().st_size for p in files)
        stages = [asset for asset in DATA_ASSETS if name in materialized[asset]]
        print(f"{name:<32} {len(files):>6} {_format_bytes(size):>10}  {', '.join(stages) or '-'}")
    return 0


def load_run_config(path: str | None) -> dict:
    """Read a `{asset_name: {key: value}}` YAML file into Dagster run config."""
    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineInputError(f"{path}: cannot read config ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise PipelineInputError(f"{path}: expected a mapping {{asset_name: {{key: value}}}}")
    import pydantic

    from llm_pipeline.definitions import CONFIG_CLASSES

    unknown = sorted(set(data) - set(CONFIG_CLASSES))
    if unknown:
        raise PipelineInputError(
            f"{path}: unknown asset(s) {unknown}; known: {sorted(CONFIG_CLASSES)}"
        )
    for name, values in data.items():
        try:
            CONFIG_CLASSES[name](**values)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise PipelineInputError(f"{path}: {name}: {problems}") from None
    return {"ops": {name: {"config": values} for name, values in data.items()}}


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
    run_config = load_run_config(args.config)
    instance = _instance()
    from dagster import DagsterInvalidConfigError, validate_run_config

    from llm_pipeline.definitions import defs
    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME

    jobs = {job.name: job for job in defs.resolve_all_job_defs() if not job.name.startswith("__")}
    if args.job not in jobs:
        raise PipelineInputError(f"unknown job {args.job!r}; known: {sorted(jobs)}")
    job = jobs[args.job]
    # Progress lines (INFO) stay visible; Dagster's per-event DEBUG chatter does not.
    run_config = {**run_config, "loggers": {"console": {"config": {"log_level": "INFO"}}}}
    try:
        validate_run_config(job, run_config)
    except DagsterInvalidConfigError as exc:
        reasons = "; ".join(error.message for error in exc.errors)
        raise PipelineInputError(
            f"{args.config or 'config'}: invalid settings: {reasons}"
        ) from None
    if not instance.has_dynamic_partition(CORPUS_PARTITIONS_NAME, name):
        raise PipelineInputError(
            f"corpus {name!r} is not registered; run `llm-pipeline corpus add {name} SOURCE...`"
        )
    from llm_pipeline.automation.executor import ensure_gpu_pool

    # In-process runs skip the job's executor; the pool still keeps training steps apart.
    ensure_gpu_pool(instance)
    result = job.execute_in_process(
        instance=instance, partition_key=name, run_config=run_config, raise_on_error=False
    )
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
            print(f"  check {evaluation.check_name}: {status}{detail}")
        elif event.event_type_value == "STEP_FAILURE":
            print(f"FAILED {event.step_key}: {_step_failure_message(event)}", file=sys.stderr)
    print(f"run {result.run_id}: {'success' if result.success else 'FAILED'}")
    return 0 if result.success else 1


def run_pipeline(args: argparse.Namespace) -> int:
    """Materialize the whole graph for one corpus, then print the report and headline figures."""
    args.job = PIPELINE_JOB
    status = materialize(args)
    if status != 0:
        return status
    from llm_pipeline.lm.checkpoint import read_config
    from llm_pipeline.lm.registry import CURRENT, LATEST, read_pointer, run_dir

    name = args.corpus
    run_id = read_pointer(name, LATEST)
    path = run_dir(name, run_id)
    summary = read_config(path)["summary"]
    current = read_pointer(name, CURRENT)
    print()
    print(f"report:        {path / 'report.html'}")
    print(f"               {path / 'report.md'}")
    print(
        f"bits per byte: {summary['val_bits_per_byte']:.4f} "
        f"(unigram baseline {summary['unigram_bits_per_byte']:.4f})"
    )
    print(
        f"trained:       {summary['parameters']:,} parameters, {summary['tokens_seen']:,} tokens "
        f"in {summary['training_seconds']:.0f} s ({summary['tokens_per_s']:,.0f} tokens/s)"
    )
    print(f"champion:      {current}{' (this run)' if current == run_id else ''}")
    return 0


PIPELINE_ASSETS = (*DATA_ASSETS, "trained_model", "evaluation_report")


def backfill(args: argparse.Namespace) -> int:
    """Submit a partition backfill of the graph (or of STAGE and downstream) for some corpora.

    The backfill is stored in the Dagster instance, exactly as the UI's "Materialize" dialog
    stores one: it shows on the Backfills page and the daemon (`make ui`, `dagster-daemon run`)
    launches its runs. Everything is checked first, so a typo submits nothing.
    """
    if args.all == bool(args.corpus):
        raise PipelineInputError("give either --corpus NAME[,NAME...] or --all")
    if args.stage not in PIPELINE_ASSETS:
        raise PipelineInputError(
            f"unknown stage {args.stage!r}; stages: {', '.join(PIPELINE_ASSETS)}"
        )
    run_config = load_run_config(args.config)
    instance = _instance()
    from dagster import AssetKey, AssetSelection
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id
    from dagster._time import get_current_timestamp

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
    if run_config:
        from dagster import DagsterInvalidConfigError, validate_run_config

        try:
            validate_run_config(defs.resolve_job_def(PIPELINE_JOB), run_config)
        except DagsterInvalidConfigError as exc:
            reasons = "; ".join(error.message for error in exc.errors)
            raise PipelineInputError(f"{args.config}: invalid settings: {reasons}") from None
    asset_graph = defs.resolve_asset_graph()
    selected = AssetSelection.assets(args.stage).downstream().resolve(asset_graph) & {
        AssetKey(name) for name in PIPELINE_ASSETS
    }
    backfill_id = make_new_backfill_id()
    submitted = PartitionBackfill.from_asset_partitions(
        backfill_id=backfill_id,
        asset_graph=asset_graph,
        partition_names=corpora,
        asset_selection=sorted(selected, key=lambda key: PIPELINE_ASSETS.index(key.path[-1])),
        backfill_timestamp=get_current_timestamp(),
        tags={"llm_pipeline/source": "cli"},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=f"llm-pipeline backfill from {args.stage}",
        description=f"corpora: {', '.join(corpora)}",
        run_config=run_config or None,
    )
    instance.add_backfill(submitted)
    stages = ", ".join(key.path[-1] for key in submitted.asset_selection)
    print(
        f"backfill {backfill_id}: {len(corpora)} corpora ({', '.join(corpora)}); assets: {stages}"
    )
    print("  runs are launched by the Dagster daemon (`make ui` starts one); follow it in the UI")
    print(f"  under Overview → Backfills, or at /runs/b/{backfill_id}")
    return 0


def generate_text(args: argparse.Namespace) -> int:
    """Sample from the promoted (or a named) model of a corpus."""
    import torch

    from llm_pipeline.lm.registry import resolve_run
    from llm_pipeline.lm.sampling import complete, load_run

    name = paths.validate_corpus_name(args.corpus)
    run = load_run(resolve_run(name, args.run))
    generator = torch.Generator().manual_seed(args.seed) if args.seed is not None else None
    stats: dict = {}
    text = complete(
        run,
        args.prompt,
        args.max_new_tokens,
        args.temperature,
        args.top_k,
        generator=generator,
        stats=stats,
    )
    print(args.prompt + text)
    print(
        f"[{stats['new_tokens']} tokens in {stats['seconds']:.2f} s, "
        f"{stats['tokens_per_s']:,.0f} tokens/s]",
        file=sys.stderr,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    corpus = commands.add_parser("corpus", help="register and list corpora")
    corpus_commands = corpus.add_subparsers(dest="corpus_command", required=True)
    add = corpus_commands.add_parser("add", help="place sources under data/raw/NAME and register")
    add.add_argument("name", metavar="NAME")
    add.add_argument("sources", metavar="SOURCE", nargs="*", help="file, folder, glob or URL")
    add.add_argument("--builtin", action="store_true", help="create the built-in corpus")
    add.add_argument("--if-missing", action="store_true", help="do nothing if already present")
    add.add_argument("--force", action="store_true", help="replace files that differ")
    add.set_defaults(func=corpus_add)
    listing = corpus_commands.add_parser("list", help="corpora, sizes, materialized stages")
    listing.set_defaults(func=corpus_list)

    run = commands.add_parser("materialize", help="materialize the pipeline for one corpus")
    run.add_argument("--corpus", required=True)
    run.add_argument("--config", help="YAML file {asset_name: {key: value}}")
    run.add_argument("--job", default=DEFAULT_JOB, help=f"job to run (default {DEFAULT_JOB})")
    run.set_defaults(func=materialize)

    whole = commands.add_parser("run", help="materialize the whole graph for one corpus")
    whole.add_argument("--corpus", required=True)
    whole.add_argument("--config", help="YAML file {asset_name: {key: value}}")
    whole.set_defaults(func=run_pipeline)

    fill = commands.add_parser(
        "backfill", help="submit a backfill of the graph for corpora (run by the daemon)"
    )
    which = fill.add_mutually_exclusive_group(required=True)
    which.add_argument("--corpus", help="comma-separated corpus names")
    which.add_argument("--all", action="store_true", help="every registered corpus")
    fill.add_argument(
        "--from",
        dest="stage",
        default=PIPELINE_ASSETS[0],
        metavar="STAGE",
        help=f"first stage to rebuild, with everything downstream (default {PIPELINE_ASSETS[0]})",
    )
    fill.add_argument("--config", help="YAML file {asset_name: {key: value}} for its runs")
    fill.set_defaults(func=backfill)

    sample = commands.add_parser("generate", help="sample text from a trained model")
    sample.add_argument("--corpus", required=True)
    sample.add_argument("--run", help="run id (default: the promoted model)")
    sample.add_argument("--prompt", required=True)
    sample.add_argument("--max-new-tokens", type=int, default=100)
    sample.add_argument("--temperature", type=float, default=0.8)
    sample.add_argument("--top-k", type=int, default=40)
    sample.add_argument("--seed", type=int, default=None)
    sample.set_defaults(func=generate_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `llm-pipeline` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PipelineInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
