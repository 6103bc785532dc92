"""Which files make up a corpus folder, and which of them may be read.

Listing and refusing are separate from reading so the sensor, the schedule and the raw stage agree
on one answer: every entry under the folder (hidden ones left out), each refused with a reason
when it is not a regular file inside the folder, and each typed by its suffix.

`refusal` answers by name, for listings. Reading goes through `open_corpus_file`, which opens
once without following any symlink below the corpus folder and checks the open descriptor, so
a file swapped for a symlink to a secret between the check and the read is refused, not read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from llm_pipeline.errors import PipelineInputError
from llm_pipeline.safe_open import UnsafeFileError, open_under

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl",)
PARQUET_SUFFIXES = (".parquet",)
COMPRESSION_SUFFIXES = (".gz", ".zst")
SUPPORTED_DESCRIPTION = ".txt, .md, .jsonl, .parquet (optionally .gz or .zst)"


def file_kind(path: Path) -> tuple[str, str | None] | None:
    """Return (`text` | `jsonl` | `parquet`, compression or None), or None for unknown types."""
    name = path.name.lower()
    compression = None
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            compression = suffix[1:]
            name = name[: -len(suffix)]
            break
    for kind, suffixes in (
        ("text", TEXT_SUFFIXES),
        ("jsonl", JSONL_SUFFIXES),
        ("parquet", PARQUET_SUFFIXES),
    ):
        if name.endswith(suffixes):
            return kind, compression
    return None


def corpus_files(root: Path) -> list[Path]:
    """Every entry under `root` that could be a corpus file, sorted; hidden ones left out.

    Walks with an explicit stack (no recursion limit, so any nesting depth works) and never
    descends into a symlinked folder. Symlinks and special files are listed too, so that
    `iter_documents` can report them (`refusal`) instead of silently reading elsewhere.
    """
    root = Path(root)
    entries: list[Path] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                children = list(listing)
        except OSError as exc:
            if folder != root:
                entries.append(folder)  # reported as unreadable
                continue
            raise PipelineInputError(
                f"{root}: corpus folder cannot be listed ({exc.strerror or exc})"
            ) from None
        for child in children:
            if child.name.startswith("."):
                continue
            if child.is_dir(follow_symlinks=False):
                stack.append(Path(child.path))
            else:
                entries.append(Path(child.path))
    return sorted(entries)


def refusal(path: Path, root: Path) -> str | None:
    """Why `path` (from `corpus_files(root)`) must not be read, or None when it is a plain file.

    A symlink may point anywhere (`~/.ssh/id_rsa`, `/dev/zero`, a FIFO that blocks forever);
    only regular files inside the corpus folder are read.
    """
    if path.is_symlink():
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return "broken symbolic link"
        if not target.is_relative_to(Path(root).resolve()):
            return f"symbolic link to {target}, outside the corpus folder"
        if target.is_dir():
            return "symbolic link to a folder (not followed)"
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "folder cannot be read (permission denied?)"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None


def open_corpus_file(path: Path, root: Path) -> BinaryIO:
    """`path` (from `corpus_files(root)`) opened for reading: one descriptor, no symlink followed
    below `root`, checked as a regular file on the descriptor.

    A symlink to a file inside the corpus is read through its resolved target, opened the same
    way. Raises `UnsafeFileError` whose `reason` is the skip reason, or OSError.
    """
    path, root = Path(path), Path(root)
    try:
        return os.fdopen(open_under(path, root), "rb")
    except UnsafeFileError as exc:
        reason = refusal(path, root)
        if reason is not None:
            raise UnsafeFileError(path, reason) from None
        if not path.is_symlink():  # changed under us: the descriptor's answer stands
            raise UnsafeFileError(path, exc.reason) from None
    base = root.resolve()
    target = path.resolve(strict=True)
    try:
        return os.fdopen(open_under(target, base), "rb")
    except UnsafeFileError as exc:
        raise UnsafeFileError(path, exc.reason) from None


def usable_files(root: Path, files: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """`files` (from `corpus_files(root)`) split into those a run could read (a supported type,
    a regular file inside the folder, not empty) and the others with why, by name and size
    only: nothing is opened, so the sensor and schedule can ask on every tick."""
    usable: list[Path] = []
    refused: list[tuple[Path, str]] = []
    for path in files:
        reason = refusal(path, root)
        if reason is None and file_kind(path) is None:
            reason = "unsupported type"
        if reason is None and path.stat().st_size == 0:
            reason = "empty file"
        if reason is None:
            usable.append(path)
        else:
            refused.append((path, reason))
    return usable, refused


def unusable_reason(root: Path, files: list[Path], shown: int = 5) -> str | None:
    """Why no file under `root` can be used (naming the first few and the supported types), or
    None when at least one can."""
    usable, refused = usable_files(root, files)
    if usable:
        return None
    if not refused:
        return f"{root} has no files"
    names = ", ".join(f"{p.relative_to(root).as_posix()} ({why})" for p, why in refused[:shown])
    more = f" and {len(refused) - shown} more" if len(refused) > shown else ""
    return (
        f"no usable file in {root} ({len(refused)} file(s): {names}{more}); "
        f"supported: {SUPPORTED_DESCRIPTION}"
    )
