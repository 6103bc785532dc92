"""Untrusted files and names: no file makes the pipeline run code, no name leads outside its root.

A pickle bomb (an object whose `__reduce__` runs code when unpickled) is placed wherever the
pipeline loads something from disk; it must be refused with a clear error and its code must not
run (its marker file stays absent). Names and paths from partitions, config and pointer files
must stay under the data and model roots, whatever `..`, absolute paths or symlinks say.
"""

from __future__ import annotations

import ast
import pickle
import re
import subprocess
from pathlib import Path

import pytest
import torch
from dagster import AssetKey

from llm_pipeline import paths
from llm_pipeline.errors import UnsafePathError
from llm_pipeline.lm.store.checkpoint import (
    LEGACY_OPTIMIZER_FILE,
    OPTIMIZER_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_model,
    load_optimizer_state,
    save_checkpoint,
)
from llm_pipeline.lm.store.folders import LATEST, read_pointer, resolve_run, run_dir
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline_tests.crash_child import tiny_training_state
from llm_pipeline_tests.test_pipeline import make_corpus

REPO = Path(__file__).resolve().parent.parent


class PickleBomb:
    """Unpickling this writes `marker`: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    model, optimizer, config = tiny_training_state(seed=0)
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text("{}")
    return save_checkpoint(tmp_path / "run", model, optimizer, config, [], tokenizer)


def test_the_bomb_is_live(tmp_path: Path) -> None:
    """Control: loaded the unsafe way, the bomb does run its code."""
    marker = tmp_path / "control-marker"
    torch.save({"state": PickleBomb(marker)}, tmp_path / "bomb.pt")
    torch.load(tmp_path / "bomb.pt", weights_only=False)
    assert marker.read_text() == "code ran"


@pytest.mark.parametrize("form", ["torch.save", "plain pickle"])
def test_pickle_bomb_as_optimizer_state_is_refused(checkpoint: Path, tmp_path, form: str) -> None:
    """As the legacy `optimizer.pt` (loaded with weights_only=True) and in place of the
    safetensors file (never unpickled at all)."""
    marker = tmp_path / "marker"
    bomb = {"state": {0: PickleBomb(marker)}, "param_groups": []}
    for name in (OPTIMIZER_FILE, LEGACY_OPTIMIZER_FILE):
        if form == "torch.save":
            torch.save(bomb, checkpoint / name)
        else:
            (checkpoint / name).write_bytes(pickle.dumps(bomb))
    with pytest.raises(CheckpointError, match=f"{OPTIMIZER_FILE}: not a valid safetensors"):
        load_optimizer_state(checkpoint)
    (checkpoint / OPTIMIZER_FILE).unlink()  # a folder written before the safetensors format
    with pytest.raises(CheckpointError, match=f"{LEGACY_OPTIMIZER_FILE}: cannot be loaded safely"):
        load_optimizer_state(checkpoint)
    assert not marker.exists()


def test_pickle_bomb_in_place_of_the_weights_is_refused(checkpoint: Path, tmp_path) -> None:
    marker = tmp_path / "marker"
    torch.save({"lm_head.weight": PickleBomb(marker)}, checkpoint / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match=f"{WEIGHTS_FILE}: corrupt or incompatible weights"):
        load_model(checkpoint)
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


# The one function that may call torch.load (training states and checkpoints from before the
# safetensors format); everything else in the package is safetensors or JSON.
LEGACY_LOADER = ("llm_pipeline/lm/store/checkpoint.py", "_load_legacy_pickle")


def _legacy_lines() -> range:
    file = REPO / LEGACY_LOADER[0]
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == LEGACY_LOADER[1]:
            return range(node.lineno, (node.end_lineno or node.lineno) + 1)
    raise AssertionError(f"{LEGACY_LOADER[1]} not found in {LEGACY_LOADER[0]}")


def test_no_code_path_can_unpickle() -> None:
    """Static guard over the package: no torch.load outside the one legacy loader (and that one
    passes weights_only=True), no torch.save of anything (state is safetensors + JSON), and
    nothing else that unpickles (pickle, dill, joblib, numpy/pandas pickles) is used at all."""
    offenders = []
    legacy = _legacy_lines()
    for file in sorted((REPO / "llm_pipeline").rglob("*.py")):
        tree = ast.parse(file.read_text(), str(file))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(
                    n.split(".")[0] in ("pickle", "dill", "joblib", "cloudpickle") for n in names
                ):
                    offenders.append(f"{file}:{node.lineno}: imports a pickle library")
        for call, name in _calls(tree):
            keywords = {k.arg: k.value for k in call.keywords}
            where = f"{file.relative_to(REPO)}:{call.lineno}: {name}"
            if name.startswith("safetensors."):
                continue  # safetensors.torch.load/save: tensors only, no pickle
            if name.endswith("torch.load") or (name == "load" and "torch" in ast.unparse(call)):
                safe = keywords.get("weights_only")
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    offenders.append(f"{where} without weights_only=True")
                if file.relative_to(REPO).as_posix() != LEGACY_LOADER[0] or (
                    call.lineno not in legacy
                ):
                    offenders.append(f"{where} outside the legacy loader {LEGACY_LOADER[1]}")
            if name.endswith("torch.save"):
                offenders.append(f"{where}: state is written as safetensors + JSON")
            if name.endswith(("read_pickle", "pickle.load", "pickle.loads")):
                offenders.append(where)
            allow = keywords.get("allow_pickle")
            if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                offenders.append(f"{where} with allow_pickle")
    assert offenders == []


@pytest.mark.parametrize("part", ["../escape", "/etc", "a/../../escape"])
def test_paths_from_config_cannot_leave_the_root(tmp_path: Path, part: str) -> None:
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(UnsafePathError, match="outside"):
        paths.within_root(root, part)
    assert paths.within_root(root, "eval/heldout.txt") == root / "eval" / "heldout.txt"
    assert paths.within_root(root, str(root / "eval")) == root / "eval"  # absolute but inside


@pytest.mark.parametrize("link", ["cleaned", "cleaned/c"])
def test_symlinks_planted_under_the_root_are_refused(tmp_path: Path, link: str) -> None:
    root, elsewhere = tmp_path / "data", tmp_path / "home"
    elsewhere.mkdir()
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    (root / link).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafePathError, match=f"resolves to {elsewhere}"):
        paths.cleaned_dir("c", root)
    paths.tokens_dir("c", root)  # other folders are unaffected


def test_run_ids_from_pointer_files_cannot_leave_the_models_root(tmp_path: Path) -> None:
    root = tmp_path / "models"
    for bad in ["../../etc", "/etc", "a/b", ".hidden", "latest", ""]:
        with pytest.raises(CheckpointError, match="invalid run id"):
            run_dir("c", bad, root)
    (root / "c").mkdir(parents=True)
    (root / "c" / LATEST).write_text("../../../etc\n")  # a tampered pointer
    assert read_pointer("c", LATEST, root) == "../../../etc"
    with pytest.raises(CheckpointError, match="invalid run id"):
        resolve_run("c", root=root)
    (tmp_path / "outside").mkdir()
    (root / "d").symlink_to(tmp_path / "outside")
    with pytest.raises(UnsafePathError, match="outside"):
        run_dir("d", "run-1", root)


def test_stage_refuses_an_output_folder_symlinked_outside(
    tmp_path: Path, data_root: Path, instance
) -> None:
    """A real run: `data/documents/<corpus>` planted as a link to a folder outside the data
    root fails the step with the reason, and the linked folder is untouched."""
    from llm_pipeline.definitions import defs
    from llm_pipeline_tests.test_pipeline import failures

    make_corpus(data_root / "raw" / "linked")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    (data_root / "documents").mkdir()
    (data_root / "documents" / "linked").symlink_to(victim)
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["linked"])
    result = defs.resolve_job_def("corpus_data_job").execute_in_process(
        instance=instance,
        partition_key="linked",
        asset_selection=[AssetKey("raw_corpus")],
        raise_on_error=False,
    )
    assert not result.success
    (message,) = failures(result)
    assert f"resolves to {victim}, outside" in message
    assert [p.name for p in victim.iterdir()] == ["precious.txt"]
    assert (data_root / "documents" / "linked").is_symlink()


def test_webserver_binds_loopback_only() -> None:
    """`make ui` starts the webserver on 127.0.0.1, and no file in the project binds to every
    interface."""
    dry_run = subprocess.run(
        ["make", "-n", "ui"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    (command,) = [
        line for line in dry_run.splitlines() if re.search(r"\b(dg dev|llm-pipeline ui)\b", line)
    ]
    assert re.search(r"(-h|--host)[ =]127\.0\.0\.1\b", command), command
    every_interface = ".".join(["0"] * 4)  # spelled so this file does not match itself
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        path = REPO / name
        if path.suffix in (".parquet", ".png", ".gz", ".zst") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        assert every_interface not in text, name
        for line in text.splitlines():
            # A webserver command line that picks its port must pick the loopback host too
            # (prose that merely names `dg dev` or `dagster dev` is not a command line).
            if re.search(
                r"(dagster(-webserver| dev)|\bdg dev|llm-pipeline ui)\b.*\s(-p|--port)[ =]", line
            ):
                assert re.search(r"(-h|--host)[ =]127\.0\.0\.1\b", line), f"{name}: {line}"
