"""`llm-pipeline corpus add` and `corpus list`: place sources in `data/raw/NAME`, register.

Downloads are untrusted input: capped in size with or without a Content-Length, redirects to
another host only with `--follow-redirects`, and every failure one clear line. Nothing is
written through a symlink planted in the corpus folder.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import glob
import http.client
import os
import shutil
import stat
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from llm_pipeline import paths
from llm_pipeline.atomic import atomic_path
from llm_pipeline.cli.common import dagster_instance, format_bytes
from llm_pipeline.cli.corpus_checks import UnusableCorpusError, check_usable
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.text.read.builtin import BUILTIN_CORPUS, write_builtin_corpus
from llm_pipeline.text.settings import CorpusAddSettings


def _url_file_name(url: str) -> str:
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise PipelineInputError(
            f"{url!r}: the URL contains a control character or a space; nothing was downloaded"
        )
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or any(ord(c) < 0x20 or c in "\x7f\\" for c in name)
    ):
        raise PipelineInputError(f"{url}: cannot take a safe file name from the URL ({name!r})")
    return name


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    """The download flags of `corpus add` (defaults from `CorpusAddSettings`, defined once)."""
    defaults = CorpusAddSettings()
    parser.add_argument(
        "--follow-redirects",
        action="store_true",
        help="follow a download's redirect to another host (same-host redirects always are)",
    )
    parser.add_argument(
        "--max-download-mb",
        type=int,
        default=defaults.max_download_mb,
        help=f"{_spec('max_download_mb').doc} (default {defaults.max_download_mb})",
    )


def _spec(name: str):
    return next(spec for spec in CorpusAddSettings.specs() if spec.name == name)


class _RedirectPolicy(urllib.request.HTTPRedirectHandler):
    """Same-host http(s) redirects are followed; another host only when the user said so."""

    def __init__(self, url: str, follow_other_hosts: bool) -> None:
        self.url, self.follow_other_hosts = url, follow_other_hosts

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if new.scheme not in ("http", "https"):
            raise PipelineInputError(
                f"{self.url}: download failed (redirected to a {new.scheme or 'relative'!r} URL, "
                "only http and https are followed)"
            )
        if (new.hostname, new.port) != (old.hostname, old.port) and not self.follow_other_hosts:
            raise PipelineInputError(
                f"{self.url}: download failed (redirected to another host, {new.netloc}); "
                "pass --follow-redirects to follow it"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _content_length(url: str, value: str | None, cap: int) -> int:
    if value is None:
        return 0
    if not value.strip().isdigit():
        shown = value[:20].encode("ascii", "backslashreplace").decode()
        raise PipelineInputError(
            f"{url}: download failed (the server sent an invalid Content-Length {shown!r})"
        )
    total = int(value)
    if total > cap:
        raise PipelineInputError(
            f"{url}: download refused: {format_bytes(total)} is larger than the cap "
            f"{format_bytes(cap)} (--max-download-mb); nothing was saved"
        )
    return total


def _download(
    url: str,
    dest_dir: Path,
    force: bool,
    follow_redirects: bool = False,
    max_bytes: int | None = None,
) -> Path | None:
    """Download `url` into `dest_dir` with a progress bar; None if an identical file is there.

    Every failure is one `PipelineInputError` line naming the URL and the reason; nothing is
    saved unless the whole file arrived within the size cap.
    """
    settings = CorpusAddSettings()
    cap = max_bytes if max_bytes is not None else settings.max_download_mb << 20
    dest = _checked_dest(dest_dir, Path(_url_file_name(url)))
    opener = urllib.request.build_opener(_RedirectPolicy(url, follow_redirects))
    try:
        with (
            opener.open(url, timeout=settings.download_timeout_seconds) as response,
            atomic_path(dest) as tmp,
        ):
            total = _content_length(url, response.headers.get("Content-Length"), cap)
            done = 0
            with open(tmp, "wb") as out:
                while block := response.read(1 << 16):
                    done += len(block)
                    if done > cap:
                        raise PipelineInputError(
                            f"{url}: download stopped: larger than the cap {format_bytes(cap)} "
                            "(--max-download-mb); nothing was saved"
                        )
                    out.write(block)
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
    except PipelineInputError:
        print(file=sys.stderr)
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        print(file=sys.stderr)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise PipelineInputError(f"{url}: download failed ({reason})") from None
    return dest


def _checked_dest(dest_dir: Path, rel: Path) -> Path:
    """`dest_dir / rel`, its folders created, refused when any part below `dest_dir` (or the
    file itself) is a symlink or not what it should be: a planted `data/raw/<c>/sub -> ~`
    must not receive the copy."""
    dest = dest_dir / rel
    current = dest_dir
    for part in rel.parts[:-1]:
        current = current / part
        with contextlib.suppress(FileExistsError):
            current.mkdir()
        _refuse_link(current, folder=True)
    if dest.exists() or dest.is_symlink():
        _refuse_link(dest, folder=False)
    return dest


def _refuse_link(path: Path, folder: bool) -> None:
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        raise PipelineInputError(
            f"{path}: is a symbolic link; refusing to write through it (remove it and rerun)"
        )
    if folder and not stat.S_ISDIR(mode):
        raise PipelineInputError(f"{path}: exists and is not a folder")
    if not folder and not stat.S_ISREG(mode):
        raise PipelineInputError(f"{path}: exists and is not a regular file")


def _copy_file(src: Path, dest: Path, force: bool) -> bool:
    """Copy atomically; identical files are left alone, different ones need --force."""
    if dest.exists() or dest.is_symlink():
        _refuse_link(dest, folder=False)
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


def place_sources(
    sources: list[str],
    dest_dir: Path,
    force: bool = False,
    follow_redirects: bool = False,
    max_download_bytes: int | None = None,
) -> list[Path]:
    """Copy files, folders (their contents), globs and http(s) URLs into a corpus folder."""
    placed: list[Path] = []
    dest_dir.mkdir(parents=True, exist_ok=True)
    for source in sources:
        if source.startswith(("http://", "https://")):
            downloaded = _download(source, dest_dir, force, follow_redirects, max_download_bytes)
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
                    dest = _checked_dest(dest_dir, file.relative_to(path))
                    if _copy_file(file, dest, force):
                        placed.append(dest)
            elif path.is_file():
                dest = _checked_dest(dest_dir, Path(path.name))
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
    """Place the sources in `data/raw/NAME`, check that a run could read them
    (`corpus_checks.check_usable`) and register the corpus; a failure leaves no new corpus
    folder behind (files already placed by an earlier add are kept)."""
    name = paths.validate_corpus_name(args.name)
    folder = paths.raw_dir(name)
    existed = folder.exists()
    try:
        return _corpus_add(args, name, folder)
    except UnusableCorpusError:
        if not existed:  # a new corpus of nothing usable: nothing of this add is kept
            shutil.rmtree(folder, ignore_errors=True)
        raise
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
        placed = place_sources(
            args.sources,
            folder,
            force=args.force,
            follow_redirects=args.follow_redirects,
            max_download_bytes=args.max_download_mb << 20,
        )
        print(f"corpus {name}: {len(placed)} file(s) placed in {folder}")
    elif not (args.if_missing and folder.is_dir()):
        raise PipelineInputError("give at least one SOURCE (file, folder, glob or URL)")
    check_usable(name, folder)
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

    from llm_pipeline.cli.overview import (
        on_request_stages,
        pipeline_stages,
        raw_size,
        read_champion,
    )
    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME

    names = instance.get_dynamic_partitions(CORPUS_PARTITIONS_NAME)
    if not names:
        print("no corpora registered; try `llm-pipeline corpus add python-stdlib-docs --builtin`")
        return 0
    stages = (*pipeline_stages(), *on_request_stages())
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
