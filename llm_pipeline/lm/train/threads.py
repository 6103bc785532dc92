"""How many CPU threads the trainer uses when `num_threads` is 0: the CPUs free when it starts.

PyTorch's default is one thread per core. On a machine shared with other busy processes that
oversubscribes the cores: OpenMP threads wait on each other at every parallel region, and the
step slows to a fraction of a single thread's (measured on 2 cores with one busy process
alongside: 2 threads 6.2k tokens/s, 1 thread 9.3k; `benchmarks/threads.py` measures it again).

So the trainer counts the CPUs it may run on (`os.sched_getaffinity`, capped by a cgroup CPU
quota), samples `/proc/stat` for a moment to see how many of them others keep busy, and takes
the rest (at least one). A `num_threads` the user set always wins. Where `/proc/stat` cannot be
read (macOS, Windows) the answer is every allowed CPU, PyTorch's own default.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE_SECONDS = 0.3
# A CPU counts as taken by others only when they keep most of it busy: a core at 30% still
# gives a thread most of its time, and leaving it idle costs more than sharing it.
BUSY_ROUNDING = 0.6


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count and why: shown in the trainer's first lines and in the run's metadata."""

    threads: int
    reason: str


def allowed_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 `cpu.max` quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(count, math.ceil(quota)) if quota else count)


def _cgroup_quota() -> float | None:
    try:
        fields = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        return int(fields[0]) / int(fields[1])
    except (ValueError, ZeroDivisionError):
        return None


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies summed over all CPUs from `/proc/stat`, or None where unreadable."""
    try:
        line = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if not line or line[0] != "cpu":
        return None
    values = [float(v) for v in line[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return sum(values[:8]) - idle, sum(values[:8])


def busy_cpus(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many CPUs' worth of time the whole machine spent busy over `seconds` (this process
    sleeps meanwhile, so it is the others' load), or None where `/proc/stat` cannot be read."""
    before = _cpu_times()
    if before is None:
        return None
    time.sleep(seconds)
    after = _cpu_times()
    if after is None or after[1] <= before[1]:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])
    return share * (os.cpu_count() or 1)


def free_cpus(allowed: int, busy: float) -> int:
    """CPUs left to this process: the allowed ones less those others keep mostly busy.

    `busy` is machine-wide; when the machine has more CPUs than this process may use, others
    are assumed to run on the rest first."""
    machine = os.cpu_count() or allowed
    outside = machine - allowed
    taken = max(0.0, busy - outside)
    return max(1, min(allowed, allowed - math.floor(taken + (1 - BUSY_ROUNDING))))


def choose_threads(setting: int, sample_seconds: float = SAMPLE_SECONDS) -> ThreadChoice:
    """The trainer's thread count: `setting` when it is above 0, else the CPUs free now."""
    if setting > 0:
        return ThreadChoice(setting, "num_threads setting")
    allowed = allowed_cpus()
    busy = busy_cpus(sample_seconds)
    if busy is None:
        return ThreadChoice(allowed, f"{allowed} CPUs allowed; load unknown")
    threads = free_cpus(allowed, busy)
    return ThreadChoice(threads, f"auto: {allowed} CPUs allowed, {busy:.1f} busy with other work")
