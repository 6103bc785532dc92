"""The split's blocking checks in Dagster: a hand-made leaky split fails `split_leakage` and a
row without a side fails `split_expectations`; the tokenizer never trains on either."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import AssetKey, AssetSelection, materialize

from llm_pipeline.assets.cleaned import cleaned_corpus
from llm_pipeline.assets.tokens import tokenizer
from llm_pipeline.checks.split import split_expectations, split_leakage
from llm_pipeline.resources import StorageResource
from llm_pipeline_tests.test_pipeline import make_corpus, run


def _checks(instance, corpus: str):
    result = materialize(
        [cleaned_corpus, tokenizer, split_expectations, split_leakage],
        instance=instance,
        partition_key=corpus,
        selection=AssetSelection.assets(tokenizer)
        | AssetSelection.checks(split_expectations, split_leakage),
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
