"""Memory a step frees goes back to the OS before the next step of an in-process run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llm_pipeline.definitions import defs
from llm_pipeline.memory import _malloc_trim

# A fragmented heap: 300 MB of 1 KB objects, one in a thousand kept, the rest freed.
SCRIPT = """
import gc, json
from llm_pipeline.memory import release_memory
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
junk = [bytes(1000) + bytes([i % 256]) for i in range(300_000)]
keep = junk[::1000]
del junk
gc.collect()
freed = rss()
release_memory()
print(json.dumps({"freed": freed, "released": rss(), "kept": len(keep)}))
"""


@pytest.mark.skipif(_malloc_trim() is None, reason="malloc_trim is glibc's")
def test_release_memory_hands_a_fragmented_heap_back() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True, timeout=120)  # fmt: skip
    figures = json.loads(out.stdout)
    # Without the release the freed objects stay resident (glibc keeps the fragmented pages).
    assert figures["freed"] - figures["released"] > 150, figures


def test_every_job_releases_memory_after_each_step() -> None:
    for job in defs.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue
        names = {hook.name for hook in job.hook_defs}
        assert {"release_memory_after_step", "release_memory_after_failed_step"} <= names, job.name
