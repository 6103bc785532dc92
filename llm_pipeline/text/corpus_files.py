"""Which files make up a corpus folder, and which of them may be read.

Listing and refusing are separate from reading so the sensor, the schedule and the raw stage agree
on one answer: every entry under the folder (hidden ones left out), each refused with a reason
when it is not a regular file inside the folder, and each typed by its suffix.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from llm_pipeline.errors import PipelineInputError

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
