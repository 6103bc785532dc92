"""Atomic outputs: write under a temporary name, then rename into place.

A crash or a cancelled run must never leave half a file (or half a folder of Parquet parts) where
a reader expects a whole one, and must never destroy the previous good output before the new one
is complete. Three more promises, because runs get killed (SIGKILL, OOM, power) and disks fill:

- Temporary names carry the writer's host and pid, so the leftovers of a killed writer are
  recognised (its pid is gone) and removed by the next writer, never the files of a live one.
- A folder swap is one `renameat2(RENAME_EXCHANGE)` on Linux, so there is no moment without the
  output. Where that is not available it is two renames; a writer killed between them leaves the
  old folder in a hidden `.old` folder, which the next writer or reader (`recover_dir`) restores.
- Temporary files are created with `O_CREAT|O_EXCL|O_NOFOLLOW` (`safe_open.create_exclusive`)
  and re-opened for `fsync` without following a symlink, so a symlink planted in an output
  folder is never written through and never published in place of a file.
- A write that fails for lack of space raises `DiskFullError`, which says so and names the path;
  the previous output is untouched.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llm_pipeline.errors import DiskFullError
from llm_pipeline.locking import output_lock
from llm_pipeline.safe_open import UnsafeFileError, create_exclusive, open_fd

# mkstemp/mkdtemp create private (0600/0700) entries; published outputs get the usual
# permissions instead, as if created with open()/mkdir() under the process umask.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK

_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"
# `.<name>.<host>-<pid>.<random>.tmp|old`: what a writer leaves behind if it is killed.
_LEFTOVER = re.compile(
    r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[^.]+\.(?P<kind>tmp|old)$"
)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _prefix(final: Path) -> str:
    return f".{final.name}.{_HOST}-{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def leftovers(final: Path) -> list[Path]:
    """Temporary entries next to `final` left by killed writers on this host (dead pids)."""
    final = Path(final)
    found = []
    try:
        entries = list(final.parent.iterdir())
    except FileNotFoundError:
        return []
    for entry in entries:
        match = _LEFTOVER.match(entry.name)
        if (
            match
            and match["name"] == final.name
            and match["host"] == _HOST
            and not _pid_alive(int(match["pid"]))
        ):
            found.append(entry)
    return sorted(found)


def recover_dir(final: Path) -> bool:
    """Restore `final` from a swap that a killed writer left half done; remove dead leftovers.

    Returns True when an old folder was put back. Safe to call from readers at any time: only
    entries of writers whose process is gone are touched.
    """
    final = Path(final)
    restored = False
    for entry in leftovers(final):
        moved = entry / final.name
        if entry.name.endswith(".old") and not final.exists() and moved.is_dir():
            with contextlib.suppress(FileNotFoundError, OSError):
                os.rename(moved, final)
                restored = True
        _remove(entry)
    return restored


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Make every file under `root` durable before the folder becomes visible (symlinks and
    special files are not opened: an fsync through a FIFO would block)."""
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                fd = open_fd(os.path.join(folder, name))
            except UnsafeFileError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(root)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(
        _AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), ctypes.c_uint(_RENAME_EXCHANGE)
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a))


# Tests switch this off to exercise the two-rename fallback (and its crash recovery).
USE_EXCHANGE = True


@contextlib.contextmanager
def disk_full_guard(path: Path) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside the block into a `DiskFullError` naming `path`."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_SPACE:
            raise
        raise DiskFullError(
            exc.errno,
            f"disk full: no space left on the device while writing {path} "
            f"({exc.strerror or exc}); the previous output is intact — free space and rerun",
        ) from exc


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to `final`; rename it over `final` only if the block succeeds.

    Concurrent writers of one file are last-writer-wins: each writes its own temporary file and
    the rename is atomic, so a reader sees one writer's whole file.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in leftovers(final):
        _remove(stale)
    fd, tmp = _create_temp(final)
    os.close(fd)
    try:
        with disk_full_guard(final):
            yield tmp
            fd = open_fd(tmp)  # refused if the name now is a symlink: never published
            try:
                os.fchmod(fd, FILE_MODE)
                os.fsync(fd)  # durable before it becomes visible under its real name
            finally:
                os.close(fd)
            os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def temp_file_for(final: Path) -> Path:
    """A new empty temporary file next to `final`, named so `leftovers(final)` finds it if
    its writer is killed; for writers that publish several files themselves."""
    fd, tmp = _create_temp(Path(final))
    os.close(fd)
    return tmp


def _create_temp(final: Path) -> tuple[int, Path]:
    """A new private file `.<name>.<host>-<pid>.<random>.tmp` next to `final`, created with
    `O_EXCL|O_NOFOLLOW` (never an existing entry or a symlink's target)."""
    for _ in range(100):
        tmp = final.parent / f"{_prefix(final)}{secrets.token_hex(6)}.tmp"
        try:
            return create_exclusive(tmp), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(final.parent))


def write_bytes_atomic(final: Path, data: bytes) -> None:
    """Write `data` to `final` atomically."""
    with atomic_path(final) as tmp:
        fd = open_fd(tmp, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)


def write_json_atomic(final: Path, obj: Any) -> None:
    """Write `obj` as indented JSON to `final` atomically."""
    write_bytes_atomic(final, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


@contextlib.contextmanager
def atomic_dir(
    final: Path, lock_timeout: float | None = None, remove_lock: bool = False
) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces `final` as a whole.

    Writers of the same folder are serialised by a lock (`.<name>.lock` next to it, deleted on
    release with `remove_lock`, for folders written once such as a run's checkpoint): a second
    run of the same stage and corpus waits for the first (up to `lock_timeout` seconds, default
    `LLM_PIPELINE_LOCK_TIMEOUT` or forever) and then writes its own complete output. Readers see
    the old complete folder or the new complete one; on failure the old folder is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(final.parent, final.name, lock_timeout, remove=remove_lock):
        recover_dir(final)
        with disk_full_guard(final):
            tmp = Path(tempfile.mkdtemp(prefix=_prefix(final), suffix=".tmp", dir=final.parent))
        try:
            with disk_full_guard(final):
                yield tmp
                os.chmod(tmp, DIR_MODE)
                _fsync_tree(tmp)
                _publish_dir(tmp, final)
                _fsync_dir(final.parent)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _publish_dir(tmp: Path, final: Path) -> None:
    if not final.exists():
        os.replace(tmp, final)
    elif USE_EXCHANGE and _exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)  # now holds the old folder
    else:
        old = Path(tempfile.mkdtemp(prefix=_prefix(final), suffix=".old", dir=final.parent))
        os.replace(final, old / final.name)
        os.replace(tmp, final)  # a crash before this line is undone by recover_dir
        shutil.rmtree(old, ignore_errors=True)
