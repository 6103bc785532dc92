"""Crashes mid-write: each stage's process is SIGKILLed in the middle of writing its output.

The previous good output must be byte-identical afterwards (after the automatic recovery a reader
or the next writer performs), the killed writer's leftovers must be recognised and removed, and
a rerun must succeed. Each stage runs for real in a child process (`crash_child.py`) that pauses
inside a writer call once some bytes are on disk; the test then kills its whole process group.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from llm_pipeline.assets.cleaned import cleaned_corpus
from llm_pipeline.assets.tokens import token_shards, tokenizer
from llm_pipeline.lm.store.checkpoint import load_model, load_optimizer_state, save_checkpoint
from llm_pipeline.lm.store.folders import run_dir
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline.resources import StorageResource
from llm_pipeline.text.store import parquet_parts
from llm_pipeline.tokens.bpe import load_tokenizer
from llm_pipeline.tokens.shards import JOURNAL_FILE, open_split, read_meta
from llm_pipeline_tests.crash_child import tiny_training_state
from llm_pipeline_tests.test_pipeline import FAST, make_corpus

CORPUS = "crashy"
REPO = Path(__file__).resolve().parent.parent


def build(instance, corpus: str, assets: list, run_config: dict | None = None):
    """Materialize `assets` for `corpus` without their checks (fast setup for fault tests)."""
    from llm_pipeline.assets.raw import raw_corpus

    by_name = {a.key.path[-1]: a for a in (raw_corpus, cleaned_corpus, tokenizer, token_shards)}
    if corpus not in instance.get_dynamic_partitions(CORPUS_PARTITIONS_NAME):
        instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, [corpus])
    names = [a if isinstance(a, str) else a.key.path[-1] for a in assets]
    ops = {name: op for name, op in {**FAST, **(run_config or {})}.items() if name in names}
    return materialize(
        [by_name[name] for name in names],
        instance=instance,
        partition_key=corpus,
        resources={"storage": StorageResource()},
        run_config={"ops": ops},
        raise_on_error=False,
    )


DATA_STAGES = ["raw_corpus", "cleaned_corpus", "tokenizer", "token_shards"]


def _set_roots(monkeypatch: pytest.MonkeyPatch, world: Path) -> None:
    monkeypatch.setenv("LLM_PIPELINE_DATA_DIR", str(world / "data"))
    monkeypatch.setenv("LLM_PIPELINE_MODELS_DIR", str(world / "models"))


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every data stage materialized once, plus a checkpoint: the 'previous good output'."""
    world = tmp_path_factory.mktemp("golden")
    make_corpus(world / "data" / "raw" / CORPUS)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _set_roots(monkeypatch, world)
        assert build(DagsterInstance.ephemeral(), CORPUS, DATA_STAGES).success
        model, optimizer, config = tiny_training_state(seed=0)
        tokenizer_file = world / "data" / "tokens" / CORPUS / "tokenizer.json"
        save_checkpoint(run_dir(CORPUS, "run-1"), model, optimizer, config, [], tokenizer_file)
    return world


@pytest.fixture
def world(golden: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "world"
    shutil.copytree(golden, copy, symlinks=True)
    _set_roots(monkeypatch, copy)
    return copy


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every visible file (hidden locks and temporaries excluded)."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not any(p.startswith(".") for p in path.relative_to(root).parts)
    }


def leftovers(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".*") if p.name.endswith((".tmp", ".old")))


def start_child(stage: str, tmp_path: Path, name: str = "child", corpus: str = CORPUS, **env: str):
    """Start `stage` of crash_child.py in its own process group."""
    log = tmp_path / f"{name}.log"
    out = open(log, "wb")  # noqa: SIM115 - closed when the child is reaped
    child = subprocess.Popen(
        [sys.executable, "-m", "llm_pipeline_tests.crash_child", stage, corpus],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: worker processes die with it
    )
    out.close()  # the child has its own copy
    child.log = log
    return child


@contextlib.contextmanager
def paused_child(stage: str, tmp_path: Path, name: str = "child"):
    """A child inside its write (it created its ready file); SIGKILLed, with its group, after."""
    ready = tmp_path / f"{name}.ready"
    child = start_child(stage, tmp_path, name, CRASH_READY_FILE=str(ready))
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if child.poll() is not None:
                pytest.fail(
                    f"{stage} child exited ({child.returncode}) before its write:\n"
                    + child.log.read_text()[-3000:]
                )
            if time.monotonic() > deadline:
                pytest.fail(f"{stage} child never reached its write:\n" + child.log.read_text())
            time.sleep(0.05)
        yield child
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL


def kill_mid_write(stage: str, world: Path, tmp_path: Path) -> None:
    """Run `stage` in a child process, wait until it is inside its write, SIGKILL it."""
    with paused_child(stage, tmp_path):
        pass


def rerun(asset, config: dict) -> None:
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, [CORPUS])
    result = materialize(
        [asset],
        instance=instance,
        partition_key=CORPUS,
        resources={"storage": StorageResource()},
        run_config={"ops": {asset.key.path[-1]: {"config": config}}},
    )
    assert result.success


def test_killed_cleaning_keeps_previous_output(world: Path, tmp_path: Path) -> None:
    before = snapshot(world)
    kill_mid_write("cleaning", world, tmp_path)
    data = world / "data"
    (torn,) = leftovers(data / "cleaned")  # the killed writer's half-built folder
    assert list(torn.glob("part-*.parquet"))
    assert snapshot(world) == before

    rerun(cleaned_corpus, FAST["cleaned_corpus"]["config"])
    assert leftovers(data) == []
    assert parquet_parts(data / "cleaned" / CORPUS)
    after = snapshot(world)
    assert after.keys() == before.keys()
    for name, digest in before.items():  # same input and settings: the same documents again
        assert name.endswith("cleaning.json") or after[name] == digest, name


def test_killed_tokenizer_keeps_previous_output(world: Path, tmp_path: Path) -> None:
    before = snapshot(world)
    kill_mid_write("tokenizing", world, tmp_path)
    folder = world / "data" / "tokens" / CORPUS
    (torn,) = leftovers(folder)
    assert torn.stat().st_size > 0
    assert snapshot(world) == before
    load_tokenizer(folder / "tokenizer.json")

    rerun(tokenizer, {"vocab_size": 300})
    assert leftovers(world) == []
    assert load_tokenizer(folder / "tokenizer.json").get_vocab_size() <= 300


def test_killed_shard_writer_keeps_previous_output(world: Path, tmp_path: Path) -> None:
    before = snapshot(world)
    kill_mid_write("shards", world, tmp_path)
    folder = world / "data" / "tokens" / CORPUS
    (torn,) = leftovers(folder)  # the writer's private folder, holding train and val
    assert sum(p.stat().st_size for p in torn.iterdir()) > 0
    assert snapshot(world) == before

    rerun(token_shards, {"batch_size": 16})  # (the split moved to cleaned_corpus: issue 12)
    assert leftovers(world) == []
    meta = read_meta(folder)
    assert meta["batch_size"] == 16
    for split in ("train", "val"):
        assert len(open_split(folder, split)) == meta["splits"][split]["tokens"] > 0


def test_killed_while_publishing_shards_never_shows_a_mixed_set(
    world: Path, tmp_path: Path
) -> None:
    """Killed between renaming train.bin and val.bin: no meta.json is visible (so no reader
    pairs new ids with old counts), and the first reader completes the new set."""
    folder = world / "data" / "tokens" / CORPUS
    kill_mid_write("shards-publish", world, tmp_path)
    assert (folder / JOURNAL_FILE).is_file()
    assert not (folder / "meta.json").exists()
    meta = read_meta(folder)
    assert meta["batch_size"] == 20 and not (folder / JOURNAL_FILE).exists()
    for split in ("train", "val"):
        assert len(open_split(folder, split)) == meta["splits"][split]["tokens"] > 0
    rerun(token_shards, {"batch_size": 16})
    assert leftovers(world) == []
    assert read_meta(folder)["batch_size"] == 16


def test_killed_checkpoint_save_keeps_previous_checkpoint(world: Path, tmp_path: Path) -> None:
    before = snapshot(world)
    folder = run_dir(CORPUS, "run-1")
    weights = load_model(folder).state_dict()
    kill_mid_write("checkpoint", world, tmp_path)
    (torn,) = leftovers(world / "models")
    assert (torn / "model.safetensors").is_file()
    assert snapshot(world) == before
    for name, tensor in load_model(folder).state_dict().items():
        assert tensor.equal(weights[name]), name
    load_optimizer_state(folder)

    model, optimizer, config = tiny_training_state(seed=2)
    save_checkpoint(
        folder, model, optimizer, config, [], world / "data/tokens/crashy/tokenizer.json"
    )
    assert leftovers(world) == []
    assert not load_model(folder).state_dict()["lm_head.weight"].equal(weights["lm_head.weight"])


def test_killed_between_the_two_renames_of_a_folder_swap_is_restored(
    world: Path, tmp_path: Path
) -> None:
    """Where renameat2 is unavailable a folder swap is two renames; a kill between them leaves
    no folder in place, and the next reader or writer puts the old one back."""
    before = snapshot(world)
    kill_mid_write("swap", world, tmp_path)
    folder = world / "data" / "cleaned" / CORPUS
    assert not folder.exists()
    assert StorageResource().cleaned(CORPUS) == folder  # a reader resolving the path restores
    assert snapshot(world) == before
    assert leftovers(world) == []

    rerun(cleaned_corpus, FAST["cleaned_corpus"]["config"])
    assert leftovers(world) == [] and parquet_parts(folder)


def test_two_runs_of_one_stage_and_corpus_are_serialised_by_a_lock(
    world: Path, tmp_path: Path
) -> None:
    """Same corpus, same stage, at once: a lock, not last-writer-wins. A run that will not wait
    fails naming the output and the holder; one that waits writes its own whole output after
    the first ends, even when the first is SIGKILLed (the kernel drops its lock)."""
    folder = world / "data" / "tokens" / CORPUS
    before = snapshot(world)
    with paused_child("shards", tmp_path, "first") as first:
        impatient = start_child(
            "shards-whole", tmp_path, "impatient", LLM_PIPELINE_LOCK_TIMEOUT="0"
        )
        assert impatient.wait(120) != 0
        message = impatient.log.read_text()
        assert (
            f"{folder.parent / CORPUS}.shards is being written by another run (pid {first.pid}"
            in (message)
        )
        assert "LLM_PIPELINE_LOCK_TIMEOUT" in message

        second = start_child("shards-whole", tmp_path, "second")
        deadline = time.monotonic() + 120
        while "waiting for pid" not in second.log.read_text():
            assert second.poll() is None, second.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "second run never reached the lock"
            time.sleep(0.05)
        assert snapshot(world) == before  # neither has published anything
    assert second.wait(120) == 0, second.log.read_text()[-3000:]
    meta = read_meta(folder)
    assert meta["batch_size"] == 30  # the second run's complete output
    for split in ("train", "val"):
        assert len(open_split(folder, split)) == meta["splits"][split]["tokens"] > 0
    assert leftovers(world) == []
