"""`llm-pipeline corpus add` and `corpus list`: place sources in `data/raw/NAME`, register."""

from __future__ import annotations

import argparse
import filecmp
import glob
import http.client
import os
import shutil
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from llm_pipeline import paths
from llm_pipeline.atomic import atomic_path
from llm_pipeline.cli.common import dagster_instance, format_bytes
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.text.builtin import BUILTIN_CORPUS, write_builtin_corpus

DATA_ASSETS = ("raw_corpus", "cleaned_corpus", "tokenizer", "token_shards")


def _url_file_name(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name or name in (".", "..") or name.startswith("."):
        raise PipelineInputError(f"{url}: cannot take a safe file name from the URL ({name!r})")
    return name


def _download(url: str, dest_dir: Path, force: bool) -> Path | None:
    """Download `url` into `dest_dir` with a progress bar; None if an identical file is there."""
    dest = dest_dir / _url_file_name(url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_path(dest) as tmp:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            with open(tmp, "wb") as out:
                while block := response.read(1 << 16):
                    out.write(block)
                    done += len(block)
                    shown = f" / {format_bytes(total)} {100 * done / total:5.1f}%" if total else ""
                    print(f"\r  {dest.name}: {format_bytes(done)}{shown}", end="", file=sys.stderr)
            print(file=sys.stderr)
            if total and done != total:
                raise PipelineInputError(
                    f"{url}: download incomplete ({done} of {total} bytes); nothing was saved"
                )
            if dest.exists() and filecmp.cmp(tmp, dest, shallow=False):
                return None
            if dest.exists() and not force:
                raise PipelineInputError(
                    f"{dest} already exists with different content (use --force to replace it)"
                )
    except (OSError, http.client.HTTPException) as exc:
        raise PipelineInputError(f"{url}: download failed ({exc})") from None
    return dest


def _copy_file(src: Path, dest: Path, force: bool) -> bool:
    """Copy atomically; identical files are left alone, different ones need --force."""
    if dest.exists():
        if filecmp.cmp(src, dest, shallow=False):
            return False
        if not force:
            raise PipelineInputError(
                f"{dest} already exists with different content (use --force to replace it)"
            )
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return True


def _folder_files(folder: Path) -> list[Path]:
    """Regular files under `folder`, without following symlinks and without hidden entries.

    A symlink inside a folder could pull any file on the machine into the training data (and
    from there into a model), so links are skipped with a warning; name a file directly to add it.
    """
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_symlink():
            print(f"warning: skipped symlink {path} (name its target directly)", file=sys.stderr)
        elif path.is_file() and not any(p.is_symlink() for p in rel.parents if p != Path(".")):
            files.append(path)
    return files


def place_sources(sources: list[str], dest_dir: Path, force: bool = False) -> list[Path]:
    """Copy files, folders (their contents), globs and http(s) URLs into a corpus folder."""
    placed: list[Path] = []
    dest_dir.mkdir(parents=True, exist_ok=True)
    for source in sources:
        if source.startswith(("http://", "https://")):
            downloaded = _download(source, dest_dir, force)
            if downloaded is not None:
                placed.append(downloaded)
            continue
        matches = sorted(glob.glob(source)) if glob.has_magic(source) else [source]
        if not matches:
            raise PipelineInputError(f"{source}: no such file or folder (or no glob match)")
        for match in matches:
            path = Path(match)
            if path.is_dir():
                for file in _folder_files(path):
                    dest = dest_dir / file.relative_to(path)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if _copy_file(file, dest, force):
                        placed.append(dest)
            elif path.is_file():
                dest = dest_dir / path.name
                if _copy_file(path, dest, force):
                    placed.append(dest)
            else:
                raise PipelineInputError(f"{source}: no such file or folder")
    return placed


def _remove_if_empty(folder: Path) -> None:
    """Remove `folder` and its empty subfolders if no file is left in them (a failed add)."""
    if not folder.is_dir() or any(p.is_file() or p.is_symlink() for p in folder.rglob("*")):
        return
    for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        sub.rmdir()
    folder.rmdir()


def corpus_add(args: argparse.Namespace) -> int:
    """Place the sources in `data/raw/NAME` and register the corpus; a failure leaves no empty
    corpus folder behind (files already placed by an earlier add are kept)."""
    name = paths.validate_corpus_name(args.name)
    folder = paths.raw_dir(name)
    existed = folder.exists()
    try:
        return _corpus_add(args, name, folder)
    except BaseException:
        if not existed:
            _remove_if_empty(folder)
        raise


def _corpus_add(args: argparse.Namespace, name: str, folder: Path) -> int:
    if args.builtin:
        if args.sources:
            raise PipelineInputError("--builtin takes no SOURCE: the corpus is built, not copied")
        if name != BUILTIN_CORPUS:
            raise PipelineInputError(f"--builtin is only for {BUILTIN_CORPUS!r}, not {name!r}")
        if args.if_missing and any(folder.glob("*.jsonl")):
            print(f"corpus {name}: already present in {folder}")
        else:
            print(f"corpus {name}: extracting standard-library docstrings (no download) …")
            counts = write_builtin_corpus(folder)
            print(f"  {counts['documents']} docstrings, {format_bytes(counts['bytes'])}")
    elif args.sources:
        placed = place_sources(args.sources, folder, force=args.force)
        print(f"corpus {name}: {len(placed)} file(s) placed in {folder}")
    elif not (args.if_missing and folder.is_dir()):
        raise PipelineInputError("give at least one SOURCE (file, folder, glob or URL)")
    instance = dagster_instance()
    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME

    if not instance.has_dynamic_partition(CORPUS_PARTITIONS_NAME, name):
        instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, [name])
        print(f"corpus {name}: registered as a partition in {os.environ['DAGSTER_HOME']}")
    return 0


def corpus_list(args: argparse.Namespace) -> int:
    """Every registered corpus: its raw files, each stage it has (all six, and the export when
    there is one), and its champion with its bits per byte, when it was trained and whether the
    raw files changed since."""
    instance = dagster_instance()
    from dagster import AssetKey

    from llm_pipeline.cli.overview import EXPORT_STAGE, STAGES, raw_size, read_champion
    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME

    names = instance.get_dynamic_partitions(CORPUS_PARTITIONS_NAME)
    if not names:
        print("no corpora registered; try `llm-pipeline corpus add python-stdlib-docs --builtin`")
        return 0
    stages = (*STAGES, EXPORT_STAGE)
    materialized = {
        asset: instance.get_materialized_partitions(AssetKey(asset)) for asset in stages
    }
    print(f"{'corpus':<32} {'files':>6} {'size':>10}  materialized")
    for name in sorted(names):
        try:
            paths.raw_dir(name)
        except PipelineInputError:
            print(f"{name!r:<32} invalid corpus name: ignored (delete this partition in the UI)")
            continue
        count, size = raw_size(name)
        done = [asset for asset in stages if name in materialized[asset]]
        print(f"{name:<32} {count:>6} {format_bytes(size):>10}  {', '.join(done) or '-'}")
        champion = read_champion(name)
        if champion is not None:
            print(f"{'':<32}   {champion.describe()}")
    return 0
