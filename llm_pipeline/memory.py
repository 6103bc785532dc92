"""Giving freed memory back to the operating system between pipeline steps.

`llm-pipeline run` executes every step in the CLI's one process (`execute_in_process`), one
after another. Memory a step frees stays resident unless it is handed back: glibc keeps freed heap
pages in its arenas and Arrow's allocator (mimalloc) keeps its pages for reuse. Step after
step, the process's resident size then climbs by what each step left (measured on a 120 MB
corpus: 364 MB after imports, about 1 GB by `token_shards`), although no step needs that
much. Releasing after every step keeps the run's peak at the largest single step's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import cache


@cache
def _malloc_trim():
    """glibc's `malloc_trim`, or None where the C library has none (macOS, musl)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_memory() -> None:
    """Collect garbage, then return unused pages of Arrow's pool and of the C heap."""
    gc.collect()
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
