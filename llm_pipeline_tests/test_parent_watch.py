"""The trainer dies with its launcher: parent-death signal, watchdog, and the exec wrapper."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_pipeline.lm.parent_watch import ParentWatch

# A child that waits for its stop request, then records why and exits (as the trainer does).
CHILD = """
import sys, time
from pathlib import Path
from llm_pipeline.lm.parent_watch import ParentWatch
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
    wrapped = [sys.executable, "-m", "llm_pipeline.lm.parent_watch", "--"]
    child = [*wrapped, sys.executable, "-c", CHILD, str(marker)]
    subprocess.run([sys.executable, "-c", launcher(child)], check=True, timeout=60)
    assert wait_for_file(marker)


def test_watchdog_notices_a_parent_that_is_not_there() -> None:
    watch = ParentWatch(parent=os.getppid() + 10_000_000, log=lambda line: None, own_process=False)
    watch._poll()  # the thread's loop, run here: returns once it sees the parent is gone
    assert watch.stop_requested() and "died" in watch.reason
