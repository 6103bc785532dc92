"""Exact resume after a crash, checkpoint cadence, and fresh starts when the inputs change."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llm_pipeline.lm.settings import ModelConfig, TrainConfig
from llm_pipeline.lm.store.checkpoint import CheckpointError
from llm_pipeline.lm.train.loop import train
from llm_pipeline.lm.train.resume import STATE_FILE, load_training_state
from llm_pipeline_tests.test_lm import TINY, shards  # noqa: F401  (the shards fixture)

# dropout > 0 so that resuming must also restore the global torch RNG exactly
MODEL = {**TINY, "dropout": 0.1}
COMPARED = ("step", "tokens", "train_loss", "val_loss", "lr")

TRAINER = """
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from llm_pipeline.lm.settings import ModelConfig
from llm_pipeline.lm.train.loop import train
from llm_pipeline.lm.settings import TrainConfig

shards, state_root, out, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
model = ModelConfig(**json.loads(sys.argv[5]))
config = TrainConfig(**json.loads(sys.argv[6]))
result = train(
    model, config, Path(shards), progress=lambda row: time.sleep(pause),
    state_root=Path(state_root) if state_root != "-" else None,
)
Path(out).write_text(json.dumps({
    "history": result.history, "steps": result.steps, "resumed_from_step":
    result.resumed_from_step, "stop_reason": result.stop_reason,
}))
"""


def _config(**overrides) -> TrainConfig:
    values = dict(
        max_steps=24,
        batch_size=4,
        learning_rate=3e-3,
        warmup_steps=4,
        eval_interval=6,
        eval_batches=2,
        log_interval=1,
        dtype="fp32",
        device="cpu",
    )
    return TrainConfig(**{**values, **overrides})


def _losses(history: list[dict]) -> list[tuple]:
    return [tuple(row[k] for k in COMPARED) for row in history]


def _run_trainer(
    script: Path, shard_dir: Path, state_root: str, out: Path, pause: float, config: TrainConfig
) -> subprocess.Popen:
    args = [str(shard_dir), state_root, str(out), str(pause), json.dumps(MODEL)]
    args.append(json.dumps(config.to_dict()))
    return subprocess.Popen([sys.executable, str(script), *args])


def test_killed_trainer_resumes_to_the_same_losses(tmp_path: Path, shards: Path) -> None:  # noqa: F811
    """kill -9 a trainer subprocess mid-run; the re-run reproduces the uninterrupted losses."""
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    config = _config(checkpoint_interval_steps=5)
    state_root = tmp_path / "state"

    # A slow run (it sleeps in its progress callback) that we kill once a state exists.
    victim = _run_trainer(script, shards, str(state_root), tmp_path / "killed.json", 0.3, config)
    deadline = time.monotonic() + 120
    # "[!.]*": not the hidden temporary folder a state is written into before its rename
    while not list(state_root.glob(f"[!.]*/{STATE_FILE}")):
        assert victim.poll() is None, "trainer ended before writing a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed.json").exists()
    (state_dir,) = [p for p in state_root.iterdir() if not p.name.startswith(".")]
    saved_step = load_training_state(state_dir).state["step"]
    assert 0 < saved_step < config.max_steps

    resumed = _run_trainer(script, shards, str(state_root), tmp_path / "resumed.json", 0, config)
    reference = _run_trainer(script, shards, "-", tmp_path / "reference.json", 0, config)
    assert resumed.wait() == 0 and reference.wait() == 0
    resumed_out = json.loads((tmp_path / "resumed.json").read_text())
    reference_out = json.loads((tmp_path / "reference.json").read_text())

    assert resumed_out["resumed_from_step"] >= saved_step > 0
    assert resumed_out["steps"] == reference_out["steps"] == config.max_steps
    assert resumed_out["stop_reason"] == reference_out["stop_reason"] == "max_steps"
    assert len(reference_out["history"]) == config.max_steps
    assert _losses(resumed_out["history"]) == _losses(reference_out["history"])  # exact


def test_stopped_run_resumes_in_process_exactly(tmp_path: Path, shards: Path) -> None:  # noqa: F811
    config = _config(max_steps=12, eval_interval=4, checkpoint_interval_steps=100)
    reference = train(ModelConfig(**MODEL), config, shards)

    steps_seen: list[int] = []
    stopped = train(
        ModelConfig(**MODEL),
        config,
        shards,
        progress=lambda row: steps_seen.append(row["step"]),
        should_stop=lambda: len(steps_seen) >= 7,
        state_root=tmp_path,
    )
    assert stopped.stop_reason == "stopped" and stopped.steps == 7
    assert stopped.checkpoint_steps == [7]  # a stop saves the state even between intervals

    resumed = train(ModelConfig(**MODEL), config, shards, state_root=tmp_path)
    assert resumed.resumed_from_step == 7
    assert _losses(resumed.history) == _losses(reference.history)
    for a, b in zip(reference.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_cadence_by_steps_and_minutes(tmp_path: Path, shards: Path) -> None:  # noqa: F811
    by_steps = train(
        ModelConfig(**TINY),
        _config(max_steps=10, checkpoint_interval_steps=3),
        shards,
        state_root=tmp_path / "steps",
    )
    assert by_steps.checkpoint_steps == [3, 6, 9]
    state = load_training_state(Path(by_steps.state_path)).state
    assert state["step"] == 9 and state["tokens_seen"] == 9 * 4 * TINY["block_size"]
    assert [row["step"] for row in state["history"]] == list(range(1, 10))

    # an interval far shorter than a step: a state after every step
    by_minutes = train(
        ModelConfig(**TINY),
        _config(max_steps=4, checkpoint_interval_minutes=1e-9),
        shards,
        state_root=tmp_path / "minutes",
    )
    assert by_minutes.checkpoint_steps == [1, 2, 3, 4]

    # no interval: no state is written at all
    off = train(ModelConfig(**TINY), _config(max_steps=4), shards, state_root=tmp_path / "off")
    assert off.checkpoint_steps == [] and not (tmp_path / "off").exists()


def test_changed_config_or_fresh_start_does_not_resume(tmp_path: Path, shards: Path) -> None:  # noqa: F811
    config = _config(max_steps=6, checkpoint_interval_steps=2)
    first = train(ModelConfig(**TINY), config, shards, state_root=tmp_path)
    assert first.checkpoint_steps == [2, 4, 6]

    # same inputs, a longer budget: a different schedule, so a different key and a fresh start
    longer = train(ModelConfig(**TINY), _config(max_steps=8), shards, state_root=tmp_path)
    assert longer.resumed_from_step == 0
    # checkpoint/log cadence is not part of the key: this one resumes (and is already done)
    again = train(
        ModelConfig(**TINY),
        _config(max_steps=6, checkpoint_interval_steps=3, log_interval=2),
        shards,
        state_root=tmp_path,
    )
    assert again.resumed_from_step == 6 and again.steps == 6
    fresh = train(
        ModelConfig(**TINY), _config(max_steps=6, resume=False), shards, state_root=tmp_path
    )
    assert fresh.resumed_from_step == 0 and fresh.steps == 6
    assert not Path(fresh.state_path).exists()  # the old state was discarded


def test_time_budget_carries_elapsed_time_forward(tmp_path: Path, shards: Path) -> None:  # noqa: F811
    config = _config(max_steps=0, max_seconds=3600.0, checkpoint_interval_steps=1000)
    calls = []
    stopped = train(
        ModelConfig(**TINY),
        config,
        shards,
        should_stop=lambda: len(calls.append(0) or calls) > 3,
        state_root=tmp_path,
    )
    saved = load_training_state(Path(stopped.state_path)).state
    assert saved["step"] == 3 and saved["elapsed_s"] > 0
    more = []
    resumed = train(
        ModelConfig(**TINY),
        config,
        shards,
        should_stop=lambda: len(more.append(0) or more) > 2,
        state_root=tmp_path,
    )
    assert resumed.resumed_from_step == 3 and resumed.steps == 5
    assert resumed.seconds > saved["elapsed_s"]


def test_corrupt_state_gives_a_clear_error(tmp_path: Path, shards: Path) -> None:  # noqa: F811
    result = train(
        ModelConfig(**TINY),
        _config(max_steps=2, checkpoint_interval_steps=1),
        shards,
        state_root=tmp_path,
    )
    (Path(result.state_path) / "optimizer.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="optimizer.safetensors"):
        train(
            ModelConfig(**TINY),
            _config(max_steps=2, checkpoint_interval_steps=1),
            shards,
            state_root=tmp_path,
        )
