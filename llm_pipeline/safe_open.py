"""Open files under the pipeline's roots without following symlinks, checked on the descriptor.

Anyone who can write into `data/` or `models/` can plant a symlink where the pipeline will open
a file (a lock, a temporary file, a pointer, a corpus file) or swap a checked file for one in
the instant between a check by name and an open by name. So every open here:

- refuses a symlink in the last component (`O_NOFOLLOW`), and with `open_under` in every
  component below a root, walking folder by folder with `dir_fd=` from a descriptor of the root;
- never blocks on a FIFO or a device (`O_NONBLOCK` for the open itself);
- checks the *open descriptor* (`os.fstat` + `S_ISREG`), so what is checked is what is read.

Everything is then read through that one descriptor. No Dagster here: the core uses it too.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from llm_pipeline.errors import UnsafePathError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class UnsafeFileError(UnsafePathError):
    """A file the pipeline refuses to open: `reason` says why in a few words (for skip lists)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}; refusing to open it")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _checked(fd: int, path: Path | str) -> int:
    """`fd` if it is a regular file (blocking mode restored), else closed and refused."""
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = _kind(mode)
            raise UnsafeFileError(path, what if what.startswith("not") else f"is {what}")
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refusal(exc: OSError, path: Path | str) -> UnsafeFileError | OSError:
    if exc.errno == errno.ELOOP or (exc.errno == errno.EMLINK and _NOFOLLOW):
        return UnsafeFileError(path, "is a symbolic link (not followed)")
    if exc.errno == errno.ENOTDIR:
        return UnsafeFileError(path, "a folder on its path is a symbolic link or a file")
    return exc


def open_fd(path: Path | str, flags: int = os.O_RDONLY, mode: int = 0o666, *, dir_fd=None) -> int:
    """`os.open` that never follows a final symlink and only returns a regular file's fd.

    Raises `UnsafeFileError` for a symlink or a special file, OSError (FileNotFoundError, …)
    otherwise.
    """
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | _NONBLOCK, mode, dir_fd=dir_fd)
    except OSError as exc:
        raise _refusal(exc, path) from None
    return _checked(fd, path)


def create_exclusive(path: Path | str, mode: int = 0o600) -> int:
    """A new file opened for writing: `O_CREAT|O_EXCL|O_NOFOLLOW`, never an existing one."""
    return open_fd(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)


def _relative_parts(path: Path, root: Path) -> list[str]:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise UnsafeFileError(path, f"outside {root}") from None
    if not parts or any(part in ("", ".", "..") for part in parts):
        raise UnsafeFileError(path, f"not a file path inside {root}")
    return list(parts)


def open_under(path: Path | str, root: Path | str, flags: int = os.O_RDONLY) -> int:
    """A regular file `path` inside folder `root`, opened folder by folder without following
    any symlink below `root` (the root itself is the user's choice and may be one).

    The open is relative to a descriptor of each checked folder (`dir_fd=`), so a folder
    swapped for a symlink after a check cannot redirect it.
    """
    path, root = Path(path), Path(root)
    parts = _relative_parts(path, root)
    folder = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(
                    part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=folder
                )
            except OSError as exc:
                raise _refusal(exc, path) from None
            os.close(folder)
            folder = child
        return open_fd(parts[-1], flags, dir_fd=folder)
    except UnsafeFileError as exc:
        raise UnsafeFileError(path, exc.reason) from None
    finally:
        os.close(folder)


@contextlib.contextmanager
def open_binary(path: Path | str, root: Path | str | None = None) -> Iterator[BinaryIO]:
    """A regular file opened for reading as a binary file object (see `open_under`/`open_fd`)."""
    fd = open_fd(path) if root is None else open_under(path, root)
    with os.fdopen(fd, "rb") as fh:
        yield fh


def read_limited(
    path: Path | str, limit: int, root: Path | str | None = None
) -> tuple[bytes, bool]:
    """At most `limit` bytes of a regular file, and whether there was more."""
    with open_binary(path, root) as fh:
        data = fh.read(limit + 1)
    return data[:limit], len(data) > limit


def read_bytes(path: Path | str, root: Path | str | None = None) -> bytes:
    """The whole of a regular file, read through one no-follow descriptor."""
    with open_binary(path, root) as fh:
        return fh.read()


def refuse_symlinked_folder(path: Path | str) -> None:
    """Raise `UnsafeFileError` when the folder `path` (if it exists) is a symlink or no folder;
    for folders the pipeline writes into and later removes."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise UnsafeFileError(path, "is a symbolic link (not followed)")
    if not stat.S_ISDIR(mode):
        raise UnsafeFileError(path, f"is {_kind(mode)}, expected a folder")


def describe_bytes(data: bytes) -> str:
    """Untrusted bytes for an error message: the length only, never the content (a pointer
    file linked to a secrets file must not be echoed into logs or the UI)."""
    return f"{len(data)} bytes, not shown"


def read_utf8(path: Path | str, root: Path | str | None = None, block: int = 1 << 20) -> str:
    """A regular file's UTF-8 text, streamed through one no-follow descriptor in blocks (a FIFO
    or device is refused at once instead of blocking; raises UnicodeDecodeError on bad bytes)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts = []
    with open_binary(path, root) as fh:
        while data := fh.read(block):
            parts.append(decoder.decode(data))
    parts.append(decoder.decode(b"", final=True))
    return "".join(parts)
