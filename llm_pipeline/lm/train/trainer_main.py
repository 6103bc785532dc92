"""The trainer as its own process: `python -m llm_pipeline.lm.train.trainer_main --job job.json`.

Run by the `trained_model` asset through Dagster Pipes, alone or under `torchrun` for
data-parallel training (DDP: `nccl` on CUDA, `gloo` on CPU). It reads a job file (model and
training settings, where the shards are, where the checkpoint goes), trains, evaluates and
writes the checkpoint. Only rank 0 talks to Dagster: progress lines go to the run log and the
final figures become the materialization's metadata. Without a Pipes session (run by hand) the
lines go to stderr instead.

`dagster_pipes` is imported only inside `main`: the core stays free of Dagster at import time,
and `dagster-pipes` is a small package with no Dagster dependency of its own.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from llm_pipeline.errors import PipelineInputError
from llm_pipeline.lm.model.networks import count_parameters
from llm_pipeline.lm.scoring import (
    EVAL_BUDGET_SHARE,
    first_documents,
    score_documents,
    token_byte_lengths,
    unigram_score,
)
from llm_pipeline.lm.settings import ModelConfig, TrainConfig
from llm_pipeline.lm.store.checkpoint import save_checkpoint
from llm_pipeline.lm.store.checkpoint_config import CheckpointConfig, TrainingSummary, ValidationSet
from llm_pipeline.lm.tracking.training_runs import NullTracker, Tracker, start_tracking
from llm_pipeline.lm.train.budget import TrainResult
from llm_pipeline.lm.train.device import resolve_device
from llm_pipeline.lm.train.distributed import distributed_rank
from llm_pipeline.lm.train.job import TrainerJob
from llm_pipeline.lm.train.loop import train
from llm_pipeline.lm.train.parent_watch import EXIT_CODE, ParentWatch, TrainerStopped
from llm_pipeline.lm.train.resume import clear_training_state, resume_point
from llm_pipeline.lm.train.threads import choose_threads
from llm_pipeline.text.split.validation_keys import VALIDATION_KEYS_FILE, read_validation_keys
from llm_pipeline.tokens.bpe import load_tokenizer
from llm_pipeline.tokens.shards import open_split, read_meta

PIPES_CONTEXT_ENV = "DAGSTER_PIPES_CONTEXT"


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return time.strftime("%M:%S", time.gmtime(seconds)) if seconds < 3600 else f"{seconds:.0f}s"


def progress_line(row: dict) -> str:
    """One logged training row as a readable line for the run log."""
    val = f" val {row['val_loss']:.4f}" if row["val_loss"] is not None else ""
    train_loss = row["train_loss"]
    return (
        f"step {row['step']}: train {train_loss if train_loss is None else f'{train_loss:.4f}'}"
        f"{val} lr {row['lr']:.2e} {row['tokens_per_s']:,.0f} tok/s "
        f"{row['percent']:.0f}% ETA {format_eta(row['eta_s'])}"
    )


def _progress(log: Callable[[str], None], tracker: Tracker) -> Callable[[dict], None]:
    """Each logged row: a line in the run log, and a point per metric in MLflow (when on)."""

    def report(row: dict) -> None:
        log(progress_line(row))
        tracker.log_row(row)

    return report


@dataclass
class ValidationScores:
    """The finished model on the validation split, and the unigram floor on the same text."""

    val_loss: float
    val_bits_per_byte: float
    unigram_bits_per_byte: float
    validation_set: ValidationSet | None = None
    stderr: float | None = None
    seconds: float = 0.0


# About one `max_doc_chars` section of text: fewer would score one short document at most.
MIN_EVAL_TARGETS = 8192


def eval_targets(tokens_seen: int, max_eval_tokens: int, block_size: int) -> int:
    """Validation targets to score: `EVAL_BUDGET_SHARE` of the tokens trained on, within
    `max_eval_tokens`, and at least `MIN_EVAL_TARGETS`. In FLOPs a target (block/stride = 2
    forward tokens) costs 2/3 of a training token, but measured on 2 CPU cores it costs about
    as much (benchmarks/evaluation.py), so one target per training token is the budget's unit."""
    sized = int(EVAL_BUDGET_SHARE * tokens_seen)
    return max(min(sized, max_eval_tokens), 4 * block_size, MIN_EVAL_TARGETS)


def score_validation(
    result: TrainResult,
    shards: Path,
    max_eval_tokens: int,
    block_size: int,
    tokenizer_path: Path | None = None,
) -> ValidationScores:
    """The model's one validation score (lm/scoring.py) on the first whole validation
    documents that fit the evaluation budget, with the unigram floor on the same targets."""
    started = time.perf_counter()
    meta = read_meta(shards)
    eot_id = int(meta["eot_id"])
    ids = first_documents(
        open_split(shards, "val"),
        eot_id,
        eval_targets(result.tokens_seen, max_eval_tokens, block_size),
    )
    lengths = token_byte_lengths(load_tokenizer(tokenizer_path or shards / "tokenizer.json"))
    model = result.model
    device = next(model.parameters()).device
    score = score_documents(model, ids, lengths, block_size, device=device)
    unigram = unigram_score(open_split(shards, "train"), ids, lengths)
    identity = meta.get("validation_set")
    validation_set = None
    if isinstance(identity, dict):
        validation_set = ValidationSet(
            rule=identity["rule"],
            keys_sha256=identity["keys_sha256"],
            documents=score.documents,
            bytes=score.bytes,
            targets=score.targets,
            stride=score.stride,
        )
    return ValidationScores(
        score.loss, score.bits_per_byte, unigram, validation_set, score.stderr,
        time.perf_counter() - started,
    )  # fmt: skip


def validation_keys_file(shards: Path, validation_set: ValidationSet | None) -> dict:
    """The shards' validation keys to keep in the checkpoint, if they are of the set the
    model was scored on (so a later split can be compared with this one)."""
    file = shards / VALIDATION_KEYS_FILE
    identity = asdict(validation_set) if validation_set else None
    return {VALIDATION_KEYS_FILE: file} if read_validation_keys(file, identity) is not None else {}


def summarize(
    job: TrainerJob, result: TrainResult, scores: ValidationScores, world_size: int
) -> TrainingSummary:
    """The checkpoint's summary of a finished run."""
    final_train_loss = next(
        (r["train_loss"] for r in reversed(result.history) if r["train_loss"] is not None), None
    )
    return TrainingSummary(
        run_id=job.run_id,
        corpus=job.corpus,
        steps=result.steps,
        tokens_seen=result.tokens_seen,
        training_seconds=round(result.seconds, 3),
        tokens_per_s=result.tokens_per_s,
        stop_reason=result.stop_reason,
        parameters=count_parameters(result.model),
        val_loss=scores.val_loss,
        val_bits_per_byte=scores.val_bits_per_byte,
        unigram_bits_per_byte=scores.unigram_bits_per_byte,
        final_train_loss=final_train_loss,
        device=result.device,
        dtype=result.dtype,
        processes=world_size,
        resumed_from_step=result.resumed_from_step,
        flops_per_token=result.flops_per_token,
        peak_flops=result.peak_flops,
        mfu=result.mfu,
        validation_set=scores.validation_set,
        val_bits_per_byte_stderr=scores.stderr,
        eval_seconds=round(scores.seconds, 3),
    )


def materialization_metadata(
    architecture: str, result: TrainResult, summary: TrainingSummary
) -> dict:
    """The figures the `trained_model` materialization shows (rounded for reading)."""
    metadata = {
        "architecture": architecture,
        "parameters": summary.parameters,
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
        "training_seconds": round(result.seconds, 1),
        "tokens_per_s": round(summary.tokens_per_s, 1),
        "stop_reason": result.stop_reason,
        "val_loss": round(summary.val_loss, 4),
        "val_bits_per_byte": round(summary.val_bits_per_byte, 4),
        "unigram_bits_per_byte": round(summary.unigram_bits_per_byte, 4),
        "val_bits_per_byte_stderr": round(summary.val_bits_per_byte_stderr or 0.0, 4),
        "val_documents_scored": summary.validation_set.documents if summary.validation_set else 0,
        "eval_seconds": summary.eval_seconds,
        "losses_finite": all(
            math.isfinite(v)
            for r in result.history
            for v in (r["train_loss"], r["val_loss"])
            if v is not None
        ),
        "device": result.device,
        "dtype": result.dtype,
        "processes": summary.processes,
        "resumed_from_step": result.resumed_from_step,
    }
    if result.mfu is not None and result.peak_flops:
        metadata["mfu"] = round(result.mfu, 4)
        metadata["measured_peak_gflops"] = result.peak_flops / 1e9
    return metadata


def run_job(
    job: TrainerJob, log: Callable[[str], None], watch: ParentWatch | None = None
) -> dict | None:
    """Train as the job says; on rank 0 evaluate, save the checkpoint and return its metadata.

    Other ranks return None once training ends (they take part only in the training loop).
    When `watch` sees the launcher die, training stops at the next step with its resumable
    state saved, and `TrainerStopped` is raised: the dead run's folder gets nothing.
    """
    rank, world_size = distributed_rank()
    settings = job.settings  # the loop takes the stage's settings model as it is
    if rank != 0:
        settings.measure_mfu = False
    tracker = start_tracking(job, log) if rank == 0 else NullTracker()  # before any training
    threads = None
    if resolve_device(settings.device).type == "cpu":
        choice = choose_threads(settings.num_threads)  # sampled before this rank starts work
        # A count the user set is per process, as given; the free CPUs are shared by the ranks.
        threads = choice.threads if settings.num_threads else max(1, choice.threads // world_size)
        if rank == 0:
            log(f"CPU threads: {threads} per process ({choice.reason})")
    result = train(
        settings,
        settings,
        Path(job.shards),
        progress=_progress(log, tracker) if rank == 0 else None,
        state_root=Path(job.state_root) if job.state_root else None,
        should_stop=watch.stop_requested if watch is not None else None,
        threads=threads,
    )
    if watch is not None and watch.stop_requested():
        raise TrainerStopped(f"{watch.reason}; training state saved at step {result.steps}")
    if rank != 0:
        return None
    if result.resumed_from_step:
        log(f"resumed from the training state at step {result.resumed_from_step}")
    if result.stop_reason == "diverged":
        raise ValueError("training diverged (loss is not finite)")

    scores = score_validation(
        result,
        Path(job.shards),
        settings.max_eval_tokens,
        settings.block_size,
        Path(job.tokenizer_path),
    )
    summary = summarize(job, result, scores, world_size)
    checkpoint = CheckpointConfig(
        model=ModelConfig.fields_of(settings),
        training=TrainConfig.fields_of(settings),
        tokenizer=job.tokenizer,
        data=job.data,
        summary=summary,
    )
    save_checkpoint(
        Path(job.out_dir),
        result.model,
        result.optimizer,
        checkpoint,
        result.history,
        Path(job.tokenizer_path),
        validation_keys_file(Path(job.shards), scores.validation_set),
    )
    if result.state_path:  # the finished checkpoint supersedes the resumable state
        clear_training_state(result.state_path)
    log(
        f"trained {summary.parameters:,} parameters for {result.steps} steps "
        f"({result.stop_reason}) on {world_size} process(es); "
        f"val {summary.val_bits_per_byte:.4f} ± {summary.val_bits_per_byte_stderr or 0:.4f} "
        f"bits/byte ({scores.seconds:.1f} s to score) "
        f"vs unigram {summary.unigram_bits_per_byte:.4f}"
    )
    metadata = materialization_metadata(settings.architecture, result, summary)
    return {**metadata, **tracker.finish(summary, Path(job.out_dir), result.history)}


def run_job_resuming(
    job: TrainerJob, log: Callable[[str], None], watch: ParentWatch
) -> dict | None:
    """`run_job`, saying first whether it continues a killed run's state, and what that cost.

    `time_lost_s` is the wall-clock time from the saved state to this restart: the work the
    killed run did after its last save plus the time nothing trained.
    """
    point = None
    if job.state_root and distributed_rank()[1] == 1:
        model, training = ModelConfig.fields_of(job.settings), TrainConfig.fields_of(job.settings)
        point = resume_point(Path(job.state_root), model, training, Path(job.shards))
    if point is not None:
        lost = point.seconds_since_saved
        log(
            f"resuming a previous run's training state at step {point.step} "
            f"({point.elapsed_s:.0f} s trained; saved {lost or 0:.0f} s ago)"
        )
    metadata = run_job(job, log, watch)
    if metadata is not None and point is not None and point.seconds_since_saved is not None:
        metadata["time_lost_s"] = round(point.seconds_since_saved, 1)
    return metadata


def _init_distributed() -> None:
    """Join torchrun's process group (nccl on CUDA, gloo on CPU) when started by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llm_pipeline.lm.train.trainer_main", description=__doc__
    )
    parser.add_argument("--job", required=True, help="the job file the trained_model asset wrote")
    args = parser.parse_args(argv)
    # First, before anything slow: die with the launcher (see lm/train/parent_watch.py).
    watch = ParentWatch().start()
    try:
        job = TrainerJob.read(Path(args.job))
    except PipelineInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _init_distributed()
    rank, _ = distributed_rank()
    try:
        if rank == 0 and os.environ.get(PIPES_CONTEXT_ENV):
            from dagster_pipes import open_dagster_pipes

            with open_dagster_pipes() as pipes:
                metadata = run_job_resuming(job, pipes.log.info, watch)
                pipes.report_asset_materialization(metadata=metadata)
        else:
            run_job_resuming(job, lambda line: print(line, file=sys.stderr, flush=True), watch)
    except TrainerStopped as exc:
        print(f"stopped: {exc}", file=sys.stderr, flush=True)
        return EXIT_CODE
    except (ValueError, PipelineInputError) as exc:
        # A clear reason as the last line of stderr, which the asset puts in its error.
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
