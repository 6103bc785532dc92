"""Failing cleanly: a corpus that fails validation never trains, and a full disk fails the step
with a message that says so, names the path, and leaves every earlier output intact."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import AssetCheckKey, AssetKey, AssetSelection, materialize

from llm_pipeline.assets.cleaned import cleaned_corpus
from llm_pipeline.assets.model import trained_model
from llm_pipeline.assets.tokens import token_shards, tokenizer
from llm_pipeline.checks.cleaned import cleaned_corpus_expectations
from llm_pipeline.errors import DiskFullError
from llm_pipeline.lm.store import checkpoint
from llm_pipeline.lm.store.checkpoint import load_model, save_checkpoint
from llm_pipeline.resources import StorageResource
from llm_pipeline.tokens import shards
from llm_pipeline.tokens.bpe import save_tokenizer, train_bpe
from llm_pipeline_tests.crash_child import tiny_training_state
from llm_pipeline_tests.test_crashes import DATA_STAGES, build, leftovers, snapshot
from llm_pipeline_tests.test_model_pipeline import TINY_MODEL
from llm_pipeline_tests.test_pipeline import make_corpus


def step_errors(result) -> list[str]:
    """Each failed step's error with its causes, as the UI shows them."""
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            text = []
            while error is not None:
                text.append(error.message)
                error = error.cause
            messages.append("\n".join(text))
    return messages


def test_failed_expectation_stops_the_run_before_training_and_shows_the_observed_value(
    data_root: Path, instance
) -> None:
    """A cleaned table whose parts were written twice (every doc_id duplicated) fails the
    blocking GX check; tokenizer, shards and training never run, and the check's record in the
    instance — what the UI shows — names the failed expectation with its observed counts."""
    make_corpus(data_root / "raw" / "twice")
    assert build(instance, "twice", DATA_STAGES[:2]).success
    folder = data_root / "cleaned" / "twice"
    (part,) = sorted(folder.glob("part-*.parquet"))
    rows = pq.ParquetFile(part).metadata.num_rows
    shutil.copyfile(part, folder / "part-00001.parquet")

    result = materialize(
        [cleaned_corpus, tokenizer, token_shards, trained_model, cleaned_corpus_expectations],
        instance=instance,
        partition_key="twice",
        selection=AssetSelection.assets(tokenizer, token_shards, trained_model)
        | AssetSelection.checks(cleaned_corpus_expectations),
        resources={"storage": StorageResource()},
        run_config={"ops": {"trained_model": {"config": TINY_MODEL}}},
        raise_on_error=False,
    )
    assert not result.success
    for asset in ("tokenizer", "token_shards", "trained_model"):
        assert "twice" not in instance.get_materialized_partitions(AssetKey(asset)), asset
    assert not (data_root.parent / "models").exists()
    assert not (data_root / "tokens" / "twice").exists()

    key = AssetCheckKey(AssetKey("cleaned_corpus"), "cleaned_corpus_expectations")
    record = instance.get_latest_asset_check_evaluation_record(key)
    evaluation = record.event.dagster_event.event_specific_data
    assert not evaluation.passed
    shown = json.dumps({k: str(v.value) for k, v in evaluation.metadata.items()})
    assert "expect_column_values_to_be_unique" in shown
    assert f'\\"unexpected_count\\": {2 * rows}' in shown  # the observed value: all rows


def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_cleaning_fails_the_step_and_keeps_earlier_outputs(
    data_root: Path, instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_corpus(data_root / "raw" / "full")
    assert build(instance, "full", DATA_STAGES[:2]).success
    before = snapshot(data_root)
    monkeypatch.setattr(pq.ParquetWriter, "write_table", _no_space)
    result = build(instance, "full", DATA_STAGES[1:2])
    assert not result.success
    (message,) = step_errors(result)
    first_line = message.splitlines()[0]
    assert "disk full" in first_line and str(data_root / "cleaned" / "full") in first_line
    assert "previous output is intact" in first_line
    assert snapshot(data_root) == before
    assert leftovers(data_root) == []


def test_disk_full_while_writing_shards_fails_the_step_and_keeps_earlier_outputs(
    data_root: Path, instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_corpus(data_root / "raw" / "fullshards")
    assert build(instance, "fullshards", DATA_STAGES).success
    before = snapshot(data_root)
    real_fdopen = os.fdopen

    class FillingFile:
        """A file on a disk with 1 KiB left (the shard writer opens its files by descriptor)."""

        def __init__(self, *args, **kwargs) -> None:
            self.file = real_fdopen(*args, **kwargs)
            self.left = 1024

        def write(self, data) -> int:
            if len(data) > self.left:
                self.file.write(bytes(data)[: self.left])
                raise OSError(errno.ENOSPC, "No space left on device")
            self.left -= len(data)
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.file.close()

    class OsOnAFullDisk:
        """`os` as the shard writer sees it: every file it opens fills up."""

        fdopen = FillingFile

        def __getattr__(self, name: str):
            return getattr(os, name)

    monkeypatch.setattr(shards, "os", OsOnAFullDisk())
    result = build(instance, "fullshards", DATA_STAGES[3:])
    assert not result.success
    (message,) = step_errors(result)
    first_line = message.splitlines()[0]
    assert f"disk full: no space left on the device while writing {data_root}" in first_line
    assert snapshot(data_root) == before
    assert leftovers(data_root) == []


def test_disk_full_while_saving_tokenizer_or_checkpoint_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bpe = train_bpe([["some text to learn a few merges from"] * 20], vocab_size=270)
    path = tmp_path / "tokenizer.json"
    save_tokenizer(bpe, path)
    model, optimizer, config = tiny_training_state(seed=0)
    folder = save_checkpoint(tmp_path / "run", model, optimizer, config, [], path)
    before = snapshot(tmp_path)

    real = Path.write_bytes

    def write_half_then_fail(self: Path, data: bytes) -> int:
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", write_half_then_fail)
    with pytest.raises(DiskFullError, match=f"disk full: .* while writing {path}"):
        save_tokenizer(bpe, path)
    monkeypatch.undo()

    monkeypatch.setattr(checkpoint, "save_optimizer_state", _no_space)
    other, other_optimizer, _ = tiny_training_state(seed=1)
    with pytest.raises(DiskFullError, match=f"while writing {folder} "):
        save_checkpoint(folder, other, other_optimizer, config, [], path)
    assert snapshot(tmp_path) == before
    assert leftovers(tmp_path) == []
    assert (
        load_model(folder)
        .state_dict()["lm_head.weight"]
        .equal(model.state_dict()["lm_head.weight"])
    )


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 16 MiB tmpfs, where the kernel itself answers ENOSPC (needs mount rights)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here; the patched-writer tests cover ENOSPC")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({mounted.stderr.strip()}); "
            "the patched-writer tests cover ENOSPC"
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_really_full_disk(small_disk: Path, instance, monkeypatch: pytest.MonkeyPatch) -> None:
    data_root = small_disk / "data"
    monkeypatch.setenv("LLM_PIPELINE_DATA_DIR", str(data_root))
    make_corpus(data_root / "raw" / "real")
    assert build(instance, "real", DATA_STAGES[:2]).success
    before = snapshot(data_root)
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as fh:  # take every free block (unbuffered: no
        # bytes left over for close() to flush into the full disk)
        try:
            while True:
                fh.write(b"\0" * (64 << 10))
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    result = build(
        instance, "real", DATA_STAGES[:2], {"raw_corpus": {"config": {"max_doc_chars": 500}}}
    )
    assert not result.success
    (message,) = step_errors(result)
    first_line = message.splitlines()[0]
    assert f"disk full: no space left on the device while writing {data_root}" in first_line
    assert snapshot(data_root) == before
    assert leftovers(data_root) == []
    os.unlink(filler)
    assert build(instance, "real", DATA_STAGES[:2]).success
