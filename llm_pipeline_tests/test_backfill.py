"""`llm-pipeline backfill`: a real asset backfill stored in the instance, checked before submit."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetKey
from dagster._core.execution.backfill import BulkActionStatus

from llm_pipeline.cli import main
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME

ALL_STAGES = [
    "raw_corpus",
    "cleaned_corpus",
    "tokenizer",
    "token_shards",
    "trained_model",
    "evaluation_report",
]


def targeted(instance, backfill) -> dict[str, set[str]]:
    """Asset name → partitions the backfill will materialize, read back from the instance."""
    subset = backfill.asset_backfill_data.target_subset
    return {
        key.to_user_string(): set(partitions.get_partition_keys())
        for key, partitions in subset.partitions_subsets_by_asset_key.items()
    }


def test_backfill_submits_selected_corpora_from_a_stage(
    tmp_path: Path, data_root: Path, instance, capsys
) -> None:
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["a", "b", "c"])
    config = tmp_path / "tiny.yaml"
    config.write_text("trained_model: {max_steps: 5, max_seconds: 0}\n")
    assert (
        main(["backfill", "--corpus", "a,b", "--from", "tokenizer", "--config", str(config)]) == 0
    )
    [backfill] = instance.get_backfills()
    assert backfill.status == BulkActionStatus.REQUESTED  # the daemon picks it up from here
    assert backfill.is_asset_backfill
    assert [key.to_user_string() for key in backfill.asset_selection] == ALL_STAGES[2:]
    assert targeted(instance, backfill) == {name: {"a", "b"} for name in ALL_STAGES[2:]}
    assert backfill.run_config["ops"]["trained_model"]["config"]["max_steps"] == 5
    assert f"backfill {backfill.backfill_id}: 2 corpora (a, b)" in capsys.readouterr().out

    assert main(["backfill", "--all"]) == 0
    newest = instance.get_backfills()[0]
    assert newest.backfill_id != backfill.backfill_id
    assert set(newest.asset_selection) == {AssetKey(name) for name in ALL_STAGES}
    assert targeted(instance, newest) == {name: {"a", "b", "c"} for name in ALL_STAGES}


def test_backfill_refuses_bad_input_before_submitting(
    tmp_path: Path, data_root: Path, instance, capsys
) -> None:
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["a"])
    assert main(["backfill", "--corpus", "a,nope,zzz"]) == 2
    err = capsys.readouterr().err
    assert "unknown corpus 'nope', 'zzz' (registered: a)" in err
    assert "nothing was submitted" in err
    assert main(["backfill", "--corpus", "a", "--from", "tokeniser"]) == 2
    assert "unknown stage 'tokeniser'" in capsys.readouterr().err
    assert main(["backfill", "--corpus", "../etc"]) == 2
    assert "invalid corpus name '../etc'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("trained_model: {n_layer: many}\n")
    assert main(["backfill", "--corpus", "a", "--config", str(bad)]) == 2
    assert f"{bad}: trained_model: n_layer" in capsys.readouterr().err
    bad.write_text("trained_model: {n_layers: 3}\n")  # a typo of a field name
    assert main(["backfill", "--corpus", "a", "--config", str(bad)]) == 2
    assert f"{bad}: invalid settings:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["backfill", "--corpus", "a", "--all"])
    assert instance.get_backfills() == []


def test_backfill_all_with_no_corpora(data_root: Path, instance, capsys) -> None:
    assert main(["backfill", "--all"]) == 2
    assert "no corpora registered" in capsys.readouterr().err
    assert instance.get_backfills() == []
