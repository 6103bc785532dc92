"""Data-parallel training: 2 CPU processes (torchrun, gloo) follow the single-process run.

Each rank takes its half of the very batch a single process would draw (one shared sampling
stream, sliced by rank), DDP averages the two half-batch gradients, and the logged loss is the
mean over ranks. With equal halves, the mean of the two half-batch means *is* the full-batch
mean, so the two runs compute the same numbers up to float summation order (fp32 rounding,
~1e-7 relative; the largest difference seen over these 20 steps was 2e-7). The tolerance,
1e-5, leaves room for other CPUs' summation orders; a real difference (a rank seeing other data,
gradients not averaged, a wrong batch share) moves the losses by 1e-2 or more within a few steps.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from llm_pipeline.automation.trainer_process import trainer_command
from llm_pipeline.lm.store.checkpoint import read_config, read_metrics
from llm_pipeline_tests.test_lm import TINY, shards  # noqa: F401  (the shards fixture)

RTOL = 1e-5
TRAINING = {
    "batch_size": 8,
    "max_steps": 20,
    "learning_rate": 3e-3,
    "warmup_steps": 4,
    "log_interval": 1,
    "eval_interval": 10,
    "eval_batches": 2,
    "dtype": "fp32",
    "device": "cpu",
    "checkpoint_interval_minutes": 0,
}


def train_with(
    processes: int, shard_dir: Path, tmp_path: Path, training: dict | None = None
) -> Path:
    out = tmp_path / f"run-{processes}"
    job = {
        "model": {**TINY, "dropout": 0.0},
        "training": training or TRAINING,
        "shards": str(shard_dir),
        "state_root": None,
        "out_dir": str(out),
        "tokenizer_path": str(shard_dir / "tokenizer.json"),
        "max_eval_tokens": 4096,
        "run_id": f"ddp-{processes}",
        "corpus": "gen",
        "checkpoint": {
            "tokenizer": {"file": "tokenizer.json", "eot_id": 0},
            "data": {"corpus": "gen"},
        },
    }
    job_file = tmp_path / f"job-{processes}.json"
    job_file.write_text(json.dumps(job))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("DAGSTER_PIPES_CONTEXT", None)
    done = subprocess.run(
        trainer_command(str(job_file), processes),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Rank 0's progress lines, once each.
    assert done.stderr.count("step 10: train") == 1
    return out


def test_two_gloo_processes_match_one_process_at_the_same_global_batch(
    tmp_path: Path,
    shards: Path,  # noqa: F811
) -> None:
    single = read_metrics(train_with(1, shards, tmp_path))
    parallel_dir = train_with(2, shards, tmp_path)
    parallel = read_metrics(parallel_dir)
    assert read_config(parallel_dir).summary.processes == 2
    assert [r["step"] for r in parallel] == [r["step"] for r in single] == list(range(1, 21))
    assert [r["tokens"] for r in parallel] == [r["tokens"] for r in single]
    for one, two in zip(single, parallel):
        assert two["train_loss"] == pytest.approx(one["train_loss"], rel=RTOL), one["step"]
        if one["val_loss"] is not None:
            assert two["val_loss"] == pytest.approx(one["val_loss"], rel=RTOL), one["step"]
    # The model learned over those steps, so matching curves are not two flat lines.
    assert single[-1]["train_loss"] < single[0]["train_loss"] - 0.3
    worst = max(abs(b["train_loss"] / a["train_loss"] - 1) for a, b in zip(single, parallel))
    print(f"largest relative train-loss difference over 20 steps: {worst:.2e}")


def test_a_time_budget_stops_every_rank_at_the_same_step(tmp_path: Path, shards: Path) -> None:  # noqa: F811
    """Each rank's clock differs; they share the progress fraction, so none waits forever."""
    budget = {**TRAINING, "max_steps": 0, "max_seconds": 3.0, "log_interval": 5}
    out = train_with(2, shards, tmp_path, budget)
    summary = read_config(out).summary
    assert summary.stop_reason == "max_seconds" and summary.steps >= 10
    assert summary.processes == 2
