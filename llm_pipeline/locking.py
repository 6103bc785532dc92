"""One writer at a time per output: an advisory `flock` on a small file next to the output.

Two runs of the same stage and corpus (a schedule firing while a manual run is still going, two
users on one machine) are serialised: the second waits for the first and then writes its own
complete output. Runs of different corpora or stages take different locks and never wait on
each other. The kernel drops the lock when the holder dies, even by SIGKILL, so a killed run can
never leave a stale lock behind.

Lock names are predictable, so the lock file is opened without following a symlink and must be
a regular file (`safe_open.open_fd`): a planted `.c1.lock -> ~/victim.txt` is refused with a
clear error instead of having its target truncated and overwritten. That holds on every attempt:
a waiter that finds the lock file gone or replaced after the holder released reopens it the
same way, and judges "still the lock file" on the name itself (`lstat`), not on a link's target.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from llm_pipeline.errors import OutputBusyError
from llm_pipeline.safe_open import open_fd

LOCK_TIMEOUT_ENV = "LLM_PIPELINE_LOCK_TIMEOUT"
_POLL_SECONDS = 0.05
log = logging.getLogger(__name__)


def lock_path(parent: Path, name: str) -> Path:
    """The lock file that guards output `name` in folder `parent`."""
    return Path(parent) / f".{name}.lock"


def default_timeout() -> float | None:
    """Seconds to wait for another writer, from `LLM_PIPELINE_LOCK_TIMEOUT`; None waits forever."""
    value = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        raise ValueError(f"{LOCK_TIMEOUT_ENV}={value!r}: expected a number of seconds") from None


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "unknown process"


def _still_linked(fd: int, path: Path) -> bool:
    """Whether `path` still names the file `fd` holds: a holder that removed the lock file on
    release leaves waiters a lock on an unlinked file, which guards nothing."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def output_lock(
    parent: Path, name: str, timeout: float | None = None, remove: bool = False
) -> Iterator[Path]:
    """Hold the exclusive lock for output `name` in `parent` for the duration of the block.

    Waits up to `timeout` seconds (None: `default_timeout()`) for another holder, then raises
    `OutputBusyError` naming the output and the holder. `remove=True` deletes the lock file on
    release, while still holding the lock (for outputs written once, like a run's checkpoint,
    whose lock files would otherwise pile up); a waiter that then wins the unlinked file sees
    it is no longer the lock file and takes the lock again on the path.
    """
    timeout = default_timeout() if timeout is None else timeout
    path = lock_path(parent, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_fd(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        started = time.monotonic()
        warned = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _still_linked(fd, path):
                    break
                os.close(fd)  # removed or replaced: lock the file now at the path (no-follow)
                fd = -1
                fd = open_fd(path, os.O_RDWR | os.O_CREAT, 0o666)
                continue
            except BlockingIOError:
                waited = time.monotonic() - started
                if timeout is not None and waited >= timeout:
                    raise OutputBusyError(
                        f"{Path(parent) / name} is being written by another run "
                        f"({_holder(fd)}); waited {waited:.0f} s. Let that run finish, or set "
                        f"{LOCK_TIMEOUT_ENV} to wait longer."
                    ) from None
                if not warned:
                    log.warning("%s: waiting for %s to finish writing it", path, _holder(fd))
                    warned = True
                time.sleep(_POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        try:
            yield path
        finally:
            if remove:
                path.unlink(missing_ok=True)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        if fd >= 0:
            os.close(fd)
