"""End to end: the four data stages and their checks, materialized in a real Dagster instance."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, AssetSelection, DagsterEventType, materialize

from llm_pipeline.assets.cleaned import cleaned_corpus
from llm_pipeline.assets.tokens import token_shards, tokenizer
from llm_pipeline.checks.cleaned import cleaned_corpus_expectations
from llm_pipeline.definitions import defs
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline.resources import StorageResource
from llm_pipeline.text.split.split_file import read_split
from llm_pipeline.text.split.validation_keys import VALIDATION_KEYS_FILE, read_validation_keys
from llm_pipeline.tokens.shards import open_split, read_meta
from llm_pipeline_tests.conftest import make_document

DATA_ASSETS = ["raw_corpus", "cleaned_corpus", "tokenizer", "token_shards"]
FAST = {"cleaned_corpus": {"config": {"workers": 1}}, "tokenizer": {"config": {"vocab_size": 512}}}


def make_corpus(folder: Path, seed: int = 0) -> None:
    """A small corpus of every supported kind, with some bad input mixed in."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    book = "\n\n".join(make_document(rng, 50) for _ in range(60))
    (folder / "book.txt").write_text(book)
    lines = [json.dumps({"text": make_document(rng, rng.randint(20, 80))}) for _ in range(120)]
    lines += ["{broken", json.dumps({"title": "no text"})]
    (folder / "records.jsonl").write_text("\n".join(lines) + "\n")
    texts = [make_document(rng, 30) for _ in range(40)]
    pq.write_table(pa.table({"text": texts + texts[:5]}), folder / "table.parquet")
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    (folder / "old.txt").write_bytes("na\xefve".encode("latin-1"))


def run(instance, corpus: str, run_config: dict | None = None, selection=None):
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, [corpus])
    job = defs.resolve_job_def("corpus_data_job")
    return job.execute_in_process(
        instance=instance,
        partition_key=corpus,
        run_config={"ops": {**FAST, **(run_config or {})}},
        asset_selection=selection,
        raise_on_error=False,
    )


def failures(result) -> list[str]:
    return [
        event.event_specific_data.error.message
        for event in result.all_events
        if event.event_type == DagsterEventType.STEP_FAILURE
    ]


def check_results(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def data_version(instance, asset: str, corpus: str) -> str:
    record = instance.get_latest_data_version_record(AssetKey(asset), partition_key=corpus)
    return record.asset_materialization.tags["dagster/data_version"]


def test_data_stages_materialize_and_pass_their_checks(data_root: Path, instance) -> None:
    make_corpus(data_root / "raw" / "tiny")
    # encoding_errors: skip keeps old.txt (Latin-1) skipped, the case these counts were written
    # for; the default (replace: decoded) is covered by test_readers.py and test_messy_corpus.py.
    raw_config = {"max_doc_chars": 2000, "encoding_errors": "skip"}
    result = run(instance, "tiny", {"raw_corpus": {"config": raw_config}})
    assert result.success, failures(result)
    assert check_results(result) == {
        "cleaned_corpus_expectations": True,
        "split_expectations": True,  # issue 12: the split's sides and its leakage
        "split_leakage": True,
        "split_ngram_overlap": True,  # issue 21: validation 13-grams seen in training
        "token_ids_in_vocab": True,
        "validation_split_not_empty": True,
        "token_counts_match_files": True,
        "tokenizer_round_trips": True,
        "documents_match_end_of_text": True,
        "shards_match_tokenizer": True,
    }
    for asset in DATA_ASSETS:
        assert "tiny" in instance.get_materialized_partitions(AssetKey(asset))
    # The leakage cleaning measured is taken by the check for the same bytes (not measured
    # twice); the keys of the validation set are kept with the shards for later comparisons.
    leakage = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "split_leakage"
    )
    assert leakage.metadata["measured"].value == "with the split (parts unchanged since)"
    identity = read_meta(data_root / "tokens" / "tiny")["validation_set"]
    keys = read_validation_keys(data_root / "tokens" / "tiny" / VALIDATION_KEYS_FILE, identity)
    assert keys is not None and len(keys) == read_split(data_root / "cleaned" / "tiny").val_docs

    raw = result.asset_materializations_for_node("raw_corpus")[0].metadata
    assert raw["files"].value == 5 and raw["files_skipped"].value == 2
    assert raw["lines_skipped"].value == 2
    assert raw["chunked_documents"].value == 1
    problems = raw["problems"].value
    assert "photo.jpg" in problems and "old.txt" in problems and "records.jsonl:121" in problems

    cleaned = result.asset_materializations_for_node("cleaned_corpus")[0].metadata
    assert cleaned["dropped_exact_duplicate"].value == 5
    dropped = sum(v for k, v in cleaned["dropped"].value.items())
    assert cleaned["docs_in"].value - dropped == cleaned["docs_out"].value

    tokens = data_root / "tokens" / "tiny"
    meta = read_meta(tokens)
    assert meta["vocab_size"] <= 512 and meta["dtype"] == "uint16"
    assert len(open_split(tokens, "val")) == meta["splits"]["val"]["tokens"] > 0
    # issue 12: min_val_docs (20) only within twice val_fraction of the bytes
    splits = meta["splits"]
    assert splits["val"]["documents"] >= 10
    assert splits["val"]["bytes"] <= 0.1 * (splits["val"]["bytes"] + splits["train"]["bytes"])
    assert (
        meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"]
        == cleaned["docs_out"].value
    )


def test_raw_data_version_tracks_file_content(data_root: Path, instance) -> None:
    folder = data_root / "raw" / "versioned"
    make_corpus(folder)
    only_raw = [AssetKey("raw_corpus")]
    assert run(instance, "versioned", selection=only_raw).success
    first = data_version(instance, "raw_corpus", "versioned")
    (folder / "book.txt").touch()  # new mtime, same bytes
    assert run(instance, "versioned", selection=only_raw).success
    assert data_version(instance, "raw_corpus", "versioned") == first
    with open(folder / "book.txt", "a") as fh:
        fh.write("\n\nOne more paragraph of text.")
    assert run(instance, "versioned", selection=only_raw).success
    assert data_version(instance, "raw_corpus", "versioned") != first


def test_bad_cleaned_table_fails_the_check_and_blocks_downstream(data_root: Path, instance) -> None:
    """A cleaned table that went bad (edited by hand, written by an old version, corrupted)
    fails the great-expectations check, and the blocking check stops tokenizer training."""
    make_corpus(data_root / "raw" / "tampered")
    stages = [AssetKey("raw_corpus"), AssetKey("cleaned_corpus")]
    assert run(instance, "tampered", selection=stages).success
    part = data_root / "cleaned" / "tampered" / "part-00000.parquet"
    bad = pa.table(
        {
            "doc_id": ["same", "same", "other"],
            "text": ["a fine document of text", "control \x07 char", ""],
            "n_chars": [23, 16, 0],
            "source": ["x", "x", "x"],
        }
    )
    pq.write_table(bad, part)

    result = materialize(
        [cleaned_corpus, tokenizer, token_shards, cleaned_corpus_expectations],
        instance=instance,
        partition_key="tampered",
        selection=AssetSelection.assets(tokenizer, token_shards)
        | AssetSelection.checks(cleaned_corpus_expectations),
        resources={"storage": StorageResource()},
        raise_on_error=False,
    )
    assert not result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    meta = evaluation.metadata
    assert meta["expect_column_values_to_be_unique"].value.startswith("FAILED")
    assert meta["expect_column_values_to_not_match_regex"].value.startswith("FAILED")
    lengths = meta["expect_column_value_lengths_to_be_between"].value
    assert lengths.startswith("FAILED") and '"unexpected_count": 2' in lengths  # "" and 16 < 20
    assert meta["expect_table_columns_to_match_set"].value.startswith("passed")
    assert meta["failed_expectations"].value == 3
    assert "tampered" not in instance.get_materialized_partitions(AssetKey("tokenizer"))
    assert "tampered" not in instance.get_materialized_partitions(AssetKey("token_shards"))
    assert not (data_root / "tokens" / "tampered").exists()


def test_corpus_with_nothing_usable_fails_with_a_clear_message(data_root: Path, instance) -> None:
    folder = data_root / "raw" / "junk"
    folder.mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"\x00\x01")
    (folder / "b.txt").write_bytes(b"\x00\x01\x02\x03")
    result = run(instance, "junk")
    assert not result.success
    (message,) = failures(result)
    assert "no usable documents" in message
    assert "a.bin: skipped file: unknown file type" in message
    assert "b.txt: skipped file: binary file" in message
    assert not (data_root / "documents" / "junk").exists()


def test_everything_dropped_by_cleaning_fails_and_keeps_previous_output(
    data_root: Path, instance
) -> None:
    make_corpus(data_root / "raw" / "strict")
    stages = [AssetKey("raw_corpus"), AssetKey("cleaned_corpus")]
    assert run(instance, "strict", selection=stages).success
    before = sorted(p.name for p in (data_root / "cleaned" / "strict").iterdir())
    result = run(
        instance,
        "strict",
        {"cleaned_corpus": {"config": {"min_words": 10**6, "workers": 1}}},
        selection=[AssetKey("cleaned_corpus")],
    )
    assert not result.success
    (message,) = failures(result)
    assert "no documents left after cleaning" in message and "min_words" in message
    assert sorted(p.name for p in (data_root / "cleaned" / "strict").iterdir()) == before


@pytest.mark.parametrize("key", ["../escape", "UPPER"])
def test_asset_refuses_invalid_partition_key(data_root: Path, instance, key: str) -> None:
    result = run(instance, key, selection=[AssetKey("raw_corpus")])
    assert not result.success
    assert "invalid corpus name" in failures(result)[0]
    assert not (data_root / "escape").exists()
    assert not (data_root / "documents" / "escape").exists()
    assert sorted(p.name for p in data_root.iterdir()) == []


def test_raw_data_version_follows_reader_settings(data_root: Path, instance) -> None:
    make_corpus(data_root / "raw" / "settings")
    only_raw = [AssetKey("raw_corpus")]
    assert run(instance, "settings", selection=only_raw).success
    first = data_version(instance, "raw_corpus", "settings")
    chunked = {"raw_corpus": {"config": {"max_doc_chars": 500}}}
    assert run(instance, "settings", chunked, selection=only_raw).success
    assert data_version(instance, "raw_corpus", "settings") != first
