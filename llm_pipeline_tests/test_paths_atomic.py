"""Corpus-name validation, path roots and atomic writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_pipeline import atomic, paths
from llm_pipeline.atomic import DIR_MODE, FILE_MODE, atomic_dir, atomic_path, write_json_atomic
from llm_pipeline.errors import InvalidCorpusName


@pytest.mark.parametrize("name", ["a", "python-stdlib-docs", "shakespeare_v2", "x.y", "0" * 64])
def test_valid_corpus_names(name: str) -> None:
    assert paths.validate_corpus_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "../x", "..", "a..b", "A", "-a", ".hidden", "a/b", "a b", "0" * 65, "x\n", "é"],
)
def test_invalid_corpus_names_are_refused_with_a_clear_message(name: str) -> None:
    with pytest.raises(InvalidCorpusName, match="invalid corpus name"):
        paths.validate_corpus_name(name)


def test_paths_refuse_invalid_names_before_building_a_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidCorpusName):
        paths.raw_dir("../etc", tmp_path)


def test_roots_follow_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLM_PIPELINE_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("LLM_PIPELINE_MODELS_DIR", str(tmp_path / "m"))
    assert paths.data_dir() == tmp_path / "d"
    assert paths.models_dir() == tmp_path / "m"
    assert paths.cleaned_dir("c") == tmp_path / "d" / "cleaned" / "c"
    monkeypatch.delenv("LLM_PIPELINE_DATA_DIR")
    assert paths.data_dir() == paths.project_root() / "data"


def test_atomic_path_keeps_old_file_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json_atomic(target, {"good": True})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_dir_replaces_whole_folder_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "parts"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with atomic_dir(target) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c"]
    # Only the output and its (hidden, tiny) writer lock: no temporary or old folders.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".parts.lock", "parts"]
    assert target.stat().st_mode & 0o777 == DIR_MODE


def test_atomic_outputs_get_umask_permissions_not_private_temp_ones(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    write_json_atomic(target, [1])
    assert target.stat().st_mode & 0o777 == FILE_MODE


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_leftovers_of_dead_writers_on_this_host_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    host = atomic._HOST
    dead = tmp_path / f".out.{host}-{_dead_pid()}.x1.tmp"
    live = tmp_path / f".out.{host}-{os.getppid()}.x2.tmp"  # a running process's
    remote = tmp_path / ".out.otherhost-1.x3.tmp"  # another machine's, on a shared disk
    for folder in (dead, live, remote):
        folder.mkdir()
    assert atomic.leftovers(target) == [dead]
    with atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
    assert not dead.exists() and live.is_dir() and remote.is_dir()


def test_half_done_swap_of_a_dead_writer_is_restored(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("good")
    old = tmp_path / f".out.{atomic._HOST}-{_dead_pid()}.x1.old"
    old.mkdir()
    os.rename(target, old / "out")  # what the two-rename swap leaves if killed in between
    assert atomic.recover_dir(target)
    assert (target / "a").read_text() == "good" and not old.exists()
    assert not atomic.recover_dir(target)  # nothing left to do


def test_folder_swap_without_renameat2_still_replaces_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "USE_EXCHANGE", False)
    target = tmp_path / "out"
    for content in ("first", "second"):
        with atomic_dir(target) as tmp:
            (tmp / "f").write_text(content)
    assert (target / "f").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]
