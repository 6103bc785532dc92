"""The trainer dies with its launcher: parent-death signal, watchdog, and the exec wrapper."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_pipeline.lm.train.parent_watch import ParentWatch
from llm_pipeline_tests.test_lm import TINY, shards  # noqa: F401  (the shards fixture)

# A child that waits for its stop request, then records why and exits (as the trainer does).
CHILD = """
import sys, time
from pathlib import Path
from llm_pipeline.lm.train.parent_watch import ParentWatch
watch = ParentWatch(log=lambda line: None).start()
Path(sys.argv[1] + ".started").write_text("ok")
while not watch.stop_requested():
    time.sleep(0.05)
Path(sys.argv[1]).write_text(watch.reason)
"""


def launcher(child: list[str]) -> str:
    """A parent that starts `child`, waits until it runs, then dies at once (no cleanup)."""
    return (
        "import os, subprocess, sys, time\n"
        f"p = subprocess.Popen({child!r}, start_new_session=True,"
        " env={**os.environ, 'LLM_PIPELINE_PARENT_PID': str(os.getpid())})\n"
        f"while not os.path.exists({child[-1]!r} + '.started'): time.sleep(0.05)\n"
        "os._exit(0)\n"
    )


def wait_for_file(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{path} not written within {timeout:.0f} s: the child outlived its parent")
        time.sleep(0.05)
    return path.read_text()


def test_child_stops_when_its_launcher_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    child = [sys.executable, "-c", CHILD, str(marker)]
    subprocess.run([sys.executable, "-c", launcher(child)], check=True, timeout=60)
    reason = wait_for_file(marker)
    assert "SIGTERM" in reason or "died" in reason


def test_exec_wrapper_passes_the_watch_on(tmp_path: Path) -> None:
    """torchrun's launcher: `parent_watch -- CMD` keeps its pid and dies with our parent."""
    marker = tmp_path / "stopped"
    wrapped = [sys.executable, "-m", "llm_pipeline.lm.train.parent_watch", "--"]
    child = [*wrapped, sys.executable, "-c", CHILD, str(marker)]
    subprocess.run([sys.executable, "-c", launcher(child)], check=True, timeout=60)
    assert wait_for_file(marker)


def test_watchdog_notices_a_parent_that_is_not_there() -> None:
    watch = ParentWatch(parent=os.getppid() + 10_000_000, log=lambda line: None, own_process=False)
    watch._poll()  # the thread's loop, run here: returns once it sees the parent is gone
    assert watch.stop_requested() and "died" in watch.reason


TORCHRUN_LAUNCHER = """
import json, os, subprocess, sys, time
import psutil
from llm_pipeline.automation.trainer_process import trainer_command
job, log, pids = sys.argv[1:4]
env = {**os.environ, "OMP_NUM_THREADS": "1", "LLM_PIPELINE_PARENT_PID": str(os.getpid())}
env.pop("DAGSTER_PIPES_CONTEXT", None)
with open(log, "w") as err:
    group = subprocess.Popen(trainer_command(job, 2), env=env, stderr=err, start_new_session=True)
deadline = time.monotonic() + 300
while "step 2: train" not in open(log).read():
    if time.monotonic() > deadline or group.poll() is not None:
        sys.exit("torchrun did not start training")
    time.sleep(0.2)
tree = [group.pid] + [p.pid for p in psutil.Process(group.pid).children(recursive=True)]
open(pids, "w").write(json.dumps(tree))
os._exit(0)
"""


def test_every_torchrun_rank_stops_with_the_launcher(tmp_path: Path, shards: Path) -> None:  # noqa: F811
    import json

    import psutil

    job = {
        "model": {**TINY, "dropout": 0.0},
        "training": {"batch_size": 8, "max_steps": 1_000_000, "log_interval": 1, "device": "cpu"},
        "shards": str(shards),
        "state_root": None,
        "out_dir": str(tmp_path / "run"),
        "tokenizer_path": str(shards / "tokenizer.json"),
        "max_eval_tokens": 4096,
        "run_id": "ddp-killed",
        "corpus": "gen",
        "checkpoint": {
            "tokenizer": {"file": "tokenizer.json", "eot_id": 0},
            "data": {"corpus": "gen"},
        },
    }
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    pids_file = tmp_path / "pids.json"
    args = [str(job_file), str(tmp_path / "torchrun.log"), str(pids_file)]
    subprocess.run([sys.executable, "-c", TORCHRUN_LAUNCHER, *args], check=True, timeout=400)
    tree = [
        psutil.Process(pid) for pid in json.loads(pids_file.read_text()) if psutil.pid_exists(pid)
    ]
    assert len(tree) >= 3  # torchrun's agent and two ranks
    try:
        _, alive = psutil.wait_procs(tree, timeout=30)
        assert not alive, f"outlived their launcher: {alive}"
    finally:
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
    assert not (tmp_path / "run").exists()  # nothing written for the dead run
