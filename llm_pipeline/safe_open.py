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
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
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


def create_exclusive(path: Path | str, mode: int = 0o600, *, dir_fd=None) -> int:
    """A new file opened for writing: `O_CREAT|O_EXCL|O_NOFOLLOW`, never an existing one."""
    return open_fd(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode, dir_fd=dir_fd)


def open_dir(path: Path | str, *, dir_fd=None, follow: bool = False) -> int:
    """A folder's descriptor (`O_DIRECTORY`, and `O_NOFOLLOW` unless `follow`): what later
    opens and renames go relative to, so a folder swapped after this cannot redirect them."""
    flags = os.O_RDONLY | _DIRECTORY | _CLOEXEC | (0 if follow else _NOFOLLOW)
    try:
        return os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        raise _refusal(exc, path) from None


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two stats are of one file (device and inode)."""
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def fd_path(fd: int, fallback: Path) -> Path:
    """A path that names what `fd` holds for as long as it is open (Linux's `/proc/self/fd/N`),
    for libraries that only take paths (pyarrow, safetensors, torch): whatever is renamed or
    swapped by name meanwhile, they write into the folder this process created. `fallback`
    (the folder's name) where there is no /proc."""
    magic = Path(f"/proc/self/fd/{fd}")
    return magic if os.path.isdir(magic) else Path(fallback)


def regular_files(folder: Path | str) -> list[Path]:
    """The regular files directly in `folder`, sorted, judged without following a link: a
    symlink named like an artifact (`loss.png -> ~/.ssh/id_rsa`), a FIFO or a device is left
    out. Open what it returns with `open_fd` (a swap after the listing is refused there)."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [Path(folder) / name for name in sorted(names)]


def is_regular_file(path: Path | str) -> bool:
    """Whether `path` itself (not a link's target) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def copy_file(source: Path | str, dest: Path | str) -> None:
    """Copy regular file `source` (read through a no-follow descriptor) to a new file `dest`."""
    with open_binary(source) as src, open(dest, "xb") as out:
        shutil.copyfileobj(src, out, 1 << 20)


@contextlib.contextmanager
def pinned(files: Iterable[Path | str]) -> Iterator[list[Path]]:
    """For libraries that take paths and open them later (MLflow's `log_artifact`): one path
    per regular file of `files`, with the same name, in a new private folder, that stays the
    file opened now — a link to `/proc/self/fd/N` of a no-follow descriptor (a copy where there
    is no /proc). A file that is a link, a special file or gone is left out, so a swap after
    the listing never ships another file (`loss.png -> ~/.ssh/id_rsa`)."""
    fds: list[int] = []
    with tempfile.TemporaryDirectory(prefix="llm-pipeline-pinned-") as folder:
        try:
            paths = []
            for file in files:
                try:
                    fd = open_fd(file)
                except (UnsafeFileError, FileNotFoundError):
                    continue
                fds.append(fd)
                dest = Path(folder) / Path(file).name
                if os.path.exists(f"/proc/self/fd/{fd}"):
                    os.symlink(f"/proc/self/fd/{fd}", dest)
                else:
                    with os.fdopen(os.dup(fd), "rb") as src, open(dest, "xb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                paths.append(dest)
            yield paths
        finally:
            for fd in fds:
                os.close(fd)


def refuse_links_below(path: Path | str, root: Path | str) -> None:
    """Raise `UnsafeFileError` if any existing component of `path` below `root` is a symlink
    (the root itself is the user's choice and may be one): for output folders that a writer
    would otherwise follow out of the root (`models/<c>/<run>/export -> /elsewhere`)."""
    path, root = Path(path), Path(root)
    if path == root:
        return
    current = root
    for part in _relative_parts(path, root):
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISLNK(mode):
            raise UnsafeFileError(current, "is a symbolic link (not followed)")


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
