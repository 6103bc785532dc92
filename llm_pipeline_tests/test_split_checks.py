"""The split's checks in Dagster: a hand-made leaky split fails `split_leakage`, a row without a
side or a collapsed split fails `split_expectations` (the tokenizer never trains on any of
them), and shared passages on both sides make `split_ngram_overlap` warn without blocking."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import AssetCheckSeverity, AssetKey, AssetSelection, materialize

from llm_pipeline.assets.cleaned import cleaned_corpus
from llm_pipeline.assets.tokens import tokenizer
from llm_pipeline.checks.split import split_expectations, split_leakage, split_ngram_overlap
from llm_pipeline.resources import StorageResource
from llm_pipeline_tests.corpora import paragraph
from llm_pipeline_tests.test_pipeline import make_corpus, run

CHECKS = (split_expectations, split_leakage, split_ngram_overlap)


def _checks(instance, corpus: str):
    result = materialize(
        [cleaned_corpus, tokenizer, *CHECKS],
        instance=instance,
        partition_key=corpus,
        selection=AssetSelection.assets(tokenizer) | AssetSelection.checks(*CHECKS),
        resources={"storage": StorageResource()},
        raise_on_error=False,
    )
    return result, {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_hand_made_leaky_split_fails_the_blocking_leakage_check(data_root: Path, instance) -> None:
    make_corpus(data_root / "raw" / "leaky")
    assert run(instance, "leaky", selection=[AssetKey("raw_corpus"), AssetKey("cleaned_corpus")])
    part = data_root / "cleaned" / "leaky" / "part-00000.parquet"
    table = pq.read_table(part).to_pydict()
    sides = table["split"]
    # every validation text copied into a training document, with a few words added
    for i in [i for i, s in enumerate(sides) if s == "val"]:
        for column in table:
            table[column].append(table[column][i])
        table["text"][-1] = table["text"][i] + " and a few words more"
        table["split"][-1] = "train"
    pq.write_table(pa.Table.from_pydict(table, schema=pq.read_schema(part)), part)

    result, checks = _checks(instance, "leaky")
    assert not result.success
    leakage = checks["split_leakage"]
    assert not leakage.passed
    assert leakage.metadata["leaked_val_byte_share"].value > 0.9
    assert leakage.metadata["measured"].value == "by this check"  # the parts were edited
    assert checks["split_expectations"].passed
    assert "leaky" not in instance.get_materialized_partitions(AssetKey("tokenizer"))


def test_rows_without_a_side_fail_the_split_expectations(data_root: Path, instance) -> None:
    make_corpus(data_root / "raw" / "sideless")
    assert run(instance, "sideless", selection=[AssetKey("raw_corpus"), AssetKey("cleaned_corpus")])
    part = data_root / "cleaned" / "sideless" / "part-00000.parquet"
    table = pq.read_table(part).to_pydict()
    table["split"] = [None] * 3 + ["test"] + table["split"][4:]
    pq.write_table(pa.Table.from_pydict(table, schema=pq.read_schema(part)), part)
    result, checks = _checks(instance, "sideless")
    assert not result.success and not checks["split_expectations"].passed
    observed = checks["split_expectations"].metadata["expectations"].value
    assert observed["expect_column_values_to_not_be_null"]["unexpected_count"] == 3
    assert not observed["expect_column_values_to_be_in_set"]["success"]


def test_a_collapsed_split_fails_the_split_expectations_naming_the_cause(
    data_root: Path, instance
) -> None:
    """What main used to write for text that shares passages: every document in validation."""
    make_corpus(data_root / "raw" / "collapsed")
    assert run(
        instance, "collapsed", selection=[AssetKey("raw_corpus"), AssetKey("cleaned_corpus")]
    )
    part = data_root / "cleaned" / "collapsed" / "part-00000.parquet"
    table = pq.read_table(part).to_pydict()
    table["split"] = ["val"] * len(table["split"])
    pq.write_table(pa.Table.from_pydict(table, schema=pq.read_schema(part)), part)
    result, checks = _checks(instance, "collapsed")
    check = checks["split_expectations"]
    assert not result.success and not check.passed
    assert check.description.startswith("the training side is empty")
    assert "materialize cleaned_corpus again" in check.description
    assert "collapsed" not in instance.get_materialized_partitions(AssetKey("tokenizer"))


def test_shared_passages_on_both_sides_warn_without_blocking(data_root: Path, instance) -> None:
    """A footer in every document, passage dedup off: no validation document is mostly inside
    a training one (split_leakage passes), but the footer's 13-grams are on both sides."""
    rng = random.Random(7)
    footer = paragraph(rng, 3, 3)
    records = [{"text": paragraph(rng, 5, 7) + "\n\n" + footer} for _ in range(300)]
    folder = data_root / "raw" / "footers"
    folder.mkdir(parents=True)
    (folder / "mail.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    config = {"cleaned_corpus": {"config": {"passage_dedup": False}}}
    assert run(instance, "footers", config, [AssetKey("raw_corpus"), AssetKey("cleaned_corpus")])
    _, checks = _checks(instance, "footers")
    warning = checks["split_ngram_overlap"]
    assert not warning.passed and warning.severity == AssetCheckSeverity.WARN
    assert warning.metadata["val_13gram_overlap"].value > 0.05
    assert "passage_dedup" in warning.description
    assert checks["split_leakage"].passed and checks["split_expectations"].passed
    assert "footers" in instance.get_materialized_partitions(AssetKey("tokenizer"))
