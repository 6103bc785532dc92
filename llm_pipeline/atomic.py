"""Atomic outputs: write under a temporary name, then rename into place.

A crash or a cancelled run must never leave half a file (or half a folder of Parquet parts) where
a reader expects a whole one, and must never destroy the previous good output before the new one
is complete. Three more promises, because runs get killed (SIGKILL, OOM, power) and disks fill:

- Temporary names carry the writer's host and pid, so the leftovers of a killed writer are
  recognised (its pid is gone) and removed by the next writer, never the files of a live one.
- A folder swap is one `renameat2(RENAME_EXCHANGE)` on Linux, so there is no moment without the
  output. Where that is not available it is two renames; a writer killed between them leaves the
  old folder in a hidden `.old` folder, which the next writer or reader (`recover_dir`) restores.
- Every temporary file and folder is created private (0600/0700) and exclusive inside a new
  private folder (`PrivateDir`), and written, `fchmod`ed, synced and renamed through descriptors:
  writers get a path through the folder's descriptor (`/proc/self/fd/N/...`), so someone who
  can write next to the output (a shared data root) and renames the temporary folder or plants
  a symlink in its place redirects no write and no chmod, and gets nothing published.
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
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llm_pipeline.errors import DiskFullError, UnsafePathError
from llm_pipeline.locking import output_lock
from llm_pipeline.safe_open import (
    UnsafeFileError,
    create_exclusive,
    fd_path,
    open_dir,
    open_fd,
    same_file,
)

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


def clear_leftovers(final: Path) -> None:
    """Remove what killed writers of `final` left (see `leftovers`)."""
    for stale in leftovers(final):
        _remove(stale)


def recover_dir(final: Path) -> bool:
    """Restore `final` from a swap that a killed writer left half done; remove dead leftovers.

    Returns True when an old folder was put back. Safe to call from readers at any time: only
    entries of writers whose process is gone are touched.
    """
    final = Path(final)
    restored = False
    for entry in leftovers(final):
        moved = entry / final.name
        if (
            entry.name.endswith(".old")
            and not final.exists()
            and moved.is_dir()
            and not moved.is_symlink()  # a planted `.old/<name> -> elsewhere` is not restored
        ):
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


def _exchange(a: str, b: str, dir_fd: int) -> bool:
    """Atomically swap two entries of folder `dir_fd` (Linux renameat2); False where
    unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(
        dir_fd, os.fsencode(a), dir_fd, os.fsencode(b), ctypes.c_uint(_RENAME_EXCHANGE)
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), a)


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


class PrivateDir:
    """A new private (0700) folder next to output `final`, held by descriptors.

    It is named like every temporary entry (`.<name>.<host>-<pid>.<random>.tmp`, so a killed
    writer's folder is found by `leftovers`), but used only through `fd` and `path` (the
    folder's descriptor, as a path where the system has one): its name lies in a folder others
    may write, and could be renamed and replaced by a symlink at any moment.
    """

    def __init__(self, final: Path, suffix: str = ".tmp") -> None:
        self.final = Path(final)
        self.parent_fd = open_dir(self.final.parent, follow=True)  # the caller's choice
        self.fd = -1
        self.published = False
        try:
            self.name = self._make(suffix)
            self.fd = open_dir(self.name, dir_fd=self.parent_fd)
            self.ident = os.fstat(self.fd)
            if self.ident.st_uid != os.geteuid() or stat.S_IMODE(self.ident.st_mode) & 0o077:
                raise UnsafeFileError(self.final.parent / self.name, "replaced as it was made")
        except BaseException:
            self.close()
            raise
        self.path = fd_path(self.fd, self.final.parent / self.name)
        self.by_descriptor = self.path != self.final.parent / self.name

    def _make(self, suffix: str) -> str:
        for _ in range(100):
            name = f"{_prefix(self.final)}{secrets.token_hex(6)}{suffix}"
            try:
                os.mkdir(name, 0o700, dir_fd=self.parent_fd)
            except FileExistsError:
                continue
            return name
        raise FileExistsError(errno.EEXIST, "no free temporary name", str(self.final.parent))

    def is_named(self, name: str | None = None) -> bool:
        """Whether `name` (default: its own) in the parent is this folder itself, not a link."""
        try:
            found = os.stat(name or self.name, dir_fd=self.parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return same_file(found, self.ident)

    def _exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def check_named(self) -> None:
        """Refuse to go on when the folder's name no longer holds it (renamed, swapped)."""
        if not self.is_named():
            raise UnsafePathError(
                f"{self.final.parent / self.name}: the temporary folder was renamed or replaced "
                f"while {self.final} was written; nothing was published (someone else writes "
                f"into {self.final.parent})"
            )

    def publish_file(self, name: str, final: Path) -> None:
        """Make file `name` inside public (umask mode), durable, and rename it onto `final`."""
        fd = open_fd(name, dir_fd=self.fd)
        try:
            os.fchmod(fd, FILE_MODE)
            os.fsync(fd)  # durable before it becomes visible under its real name
        finally:
            os.close(fd)
        os.replace(name, final.name, src_dir_fd=self.fd, dst_dir_fd=self.parent_fd)

    def publish_dir(self, final: Path) -> None:
        """Put the folder itself in place of `final` (exchanged with the old one when there is
        one), then check that `final` is this folder: a name swapped in between is removed."""
        self.check_named()
        target, pfd = final.name, self.parent_fd
        if not self._exists(target):
            os.replace(self.name, target, src_dir_fd=pfd, dst_dir_fd=pfd)
        elif USE_EXCHANGE and _exchange(self.name, target, pfd):
            shutil.rmtree(self.name, dir_fd=pfd, ignore_errors=True)  # the old folder
        else:
            old = PrivateDir(final, ".old")
            try:
                os.replace(target, target, src_dir_fd=pfd, dst_dir_fd=old.fd)
                os.replace(self.name, target, src_dir_fd=pfd, dst_dir_fd=pfd)  # see recover_dir
            finally:
                old.close()
                shutil.rmtree(old.name, dir_fd=pfd, ignore_errors=True)
        self.published = True
        if not self.is_named(target):
            with contextlib.suppress(OSError):
                if stat.S_ISLNK(os.stat(target, dir_fd=pfd, follow_symlinks=False).st_mode):
                    os.unlink(target, dir_fd=pfd)
            raise UnsafePathError(
                f"{final}: replaced while it was published (the temporary folder was swapped "
                "for a link); the link was removed, nothing was published"
            )

    def clear(self) -> None:
        """Remove what was written and the folder itself, through its descriptor (unless it
        was published); a name now holding something else is left alone."""
        if self.fd < 0 or self.published:
            return
        with contextlib.suppress(OSError), os.scandir(self.fd) as entries:
            for entry in list(entries):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.name, dir_fd=self.fd, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.name, dir_fd=self.fd)
        if self.is_named():
            with contextlib.suppress(OSError):
                os.rmdir(self.name, dir_fd=self.parent_fd)

    def close(self) -> None:
        for fd in (self.fd, self.parent_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.parent_fd = -1


@contextlib.contextmanager
def private_dir(final: Path) -> Iterator[PrivateDir]:
    """A `PrivateDir` next to `final`, emptied and removed on exit unless it was published."""
    folder = PrivateDir(final)
    try:
        yield folder
    finally:
        folder.clear()
        folder.close()


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to `final`; rename it over `final` only if the block succeeds.

    The file lies in a private folder of its own (`PrivateDir`), reached through that folder's
    descriptor, so nobody else can swap it for a symlink while it is written; it is `fchmod`ed,
    synced and renamed into place through descriptors. Concurrent writers of one file are
    last-writer-wins: each writes its own temporary file and the rename is atomic, so a reader
    sees one writer's whole file.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clear_leftovers(final)
    with disk_full_guard(final), private_dir(final) as folder:
        name = f".{final.name}.part"  # not *.tmp: the folder is the one leftover to find
        os.close(create_exclusive(name, dir_fd=folder.fd))
        yield folder.path / name
        if not folder.by_descriptor:
            folder.check_named()
        folder.publish_file(name, final)


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

    The folder is a `PrivateDir` yielded as a path through its descriptor, so renaming it and
    planting a symlink in its place redirects no write; its mode is set with `fchmod`, and it
    is published only if its name still holds it (checked on the inode before and after the
    rename), else the step fails naming it.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(final.parent, final.name, lock_timeout, remove=remove_lock):
        recover_dir(final)
        with disk_full_guard(final), private_dir(final) as folder:
            yield folder.path
            os.fchmod(folder.fd, DIR_MODE)
            _fsync_tree(folder.path)
            folder.publish_dir(final)
            os.fsync(folder.parent_fd)
