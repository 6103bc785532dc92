"""Concurrent runs: different corpora share nothing but the instance; one output, one writer.

The choice is a lock (not last-writer-wins): every folder output is written under an `flock` on a
hidden `.<name>.lock` next to it, so two runs of the same stage and corpus take turns and each
publishes a whole output; runs of different corpora take different locks and never wait.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import AssetKey

from llm_pipeline.atomic import atomic_dir
from llm_pipeline.errors import OutputBusyError
from llm_pipeline.locking import LOCK_TIMEOUT_ENV, output_lock
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline.text.read.readers import iter_documents
from llm_pipeline.text.store import parquet_parts
from llm_pipeline_tests.test_crashes import start_child
from llm_pipeline_tests.test_pipeline import DATA_ASSETS, make_corpus


def test_busy_output_fails_after_the_timeout_naming_output_and_holder(tmp_path: Path) -> None:
    target = tmp_path / "cleaned" / "c"
    with atomic_dir(target) as tmp:
        (tmp / "part").write_text("first")
        with pytest.raises(OutputBusyError) as caught, atomic_dir(target, lock_timeout=0):
            pass
    message = str(caught.value)
    assert f"{target} is being written by another run (pid " in message
    assert LOCK_TIMEOUT_ENV in message
    assert (target / "part").read_text() == "first"


def test_lock_timeout_setting_is_validated(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match="LLM_PIPELINE_LOCK_TIMEOUT='soon'"):
        with output_lock(tmp_path, "x"):
            pass


def test_a_waiting_writer_publishes_after_the_first_one_whole(tmp_path: Path) -> None:
    target = tmp_path / "out"
    first_inside, release, second_done = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with atomic_dir(target) as tmp:
            (tmp / "who").write_text("first")
            first_inside.set()
            release.wait(30)
            order.append("first published")

    def second() -> None:
        first_inside.wait(30)
        with atomic_dir(target) as tmp:  # waits for the lock
            order.append("second writing")
            (tmp / "who").write_text("second")
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    first_inside.wait(30)
    assert not second_done.is_set() and order == []
    release.set()
    for thread in threads:
        thread.join(30)
    assert order == ["first published", "second writing"]
    assert (target / "who").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_two_corpora_at_once_share_only_the_instance(
    tmp_path: Path, data_root: Path, instance
) -> None:
    corpora = ["alpha", "beta"]
    for seed, corpus in enumerate(corpora):
        make_corpus(data_root / "raw" / corpus, seed=seed + 1)
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, corpora)
    children = [start_child("corpus-data", tmp_path, corpus, corpus) for corpus in corpora]
    for child in children:
        assert child.wait(300) == 0, child.log.read_text()[-3000:]

    for asset in DATA_ASSETS:
        assert set(corpora) <= instance.get_materialized_partitions(AssetKey(asset))
    for path in data_root.rglob("*"):
        if path.is_file():
            owner = path.relative_to(data_root).parts[1]
            assert owner in corpora or owner.split(".")[1] in corpora, path
    for corpus in corpora:
        written = [
            text
            for part in parquet_parts(data_root / "documents" / corpus)
            for text in pq.read_table(part).column("text").to_pylist()
        ]
        own = [d.text for d in iter_documents(data_root / "raw" / corpus, max_doc_chars=20_000)]
        assert written == own  # nothing of the other corpus leaked in
