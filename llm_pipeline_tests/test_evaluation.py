"""Promotion only on text neither model trained on, one validation number in the report, and
the split settings in their one place."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_pipeline.asset_graph import stage_settings
from llm_pipeline.report.promotion import (
    EVAL_FILES,
    NO_FAIR_TEXT,
    RESCORE,
    SHARED,
    STORED,
    ScoredRun,
    SharedText,
    no_fair_comparison,
    plan_comparison,
)
from llm_pipeline.report.render import render_html, render_markdown
from llm_pipeline.run_config import check_stages
from llm_pipeline.settings_base import SettingsError
from llm_pipeline.stage_assets import ASSETS
from llm_pipeline.text.split.sides import keys_digest, split_key
from llm_pipeline.text.split.validation_keys import (
    read_validation_keys,
    shared_validation_texts,
    validation_keys,
    write_validation_keys,
)
from llm_pipeline_tests.test_report import make_inputs

SET = {"rule": "v1 ...", "keys_sha256": "abc", "documents": 40}


def run(run_id: str, bpb: float | None, vset: dict | None) -> ScoredRun:
    return ScoredRun(run_id, bpb, vset)


def test_same_validation_set_compares_the_stored_scores() -> None:
    plan = plan_comparison(run("new", 1.5, SET), run("old", 1.6, SET), False)
    assert plan.how == STORED and plan.like_for_like and plan.documents == 40


def test_same_set_different_amount_rescores_on_the_shared_documents() -> None:
    plan = plan_comparison(run("new", 1.5, SET), run("old", 1.6, {**SET, "documents": 25}), True)
    assert plan.how == RESCORE and plan.documents == 25 and plan.like_for_like


@pytest.mark.parametrize("champion_set", [None, {**SET, "keys_sha256": "other"}])
def test_a_changed_split_never_promotes_on_this_validation_text(champion_set) -> None:
    challenger, champion = run("new", 1.0, SET), run("old", 1.6, champion_set)
    with_files = plan_comparison(challenger, champion, True)
    assert with_files.how == EVAL_FILES and not with_files.like_for_like
    plan = plan_comparison(challenger, champion, False)
    assert plan.how == NO_FAIR_TEXT
    decision = no_fair_comparison(challenger, "old", plan)
    assert not decision.promoted and "eval_files" in decision.reason
    assert decision.as_comparison()["like_for_like"] is False


def test_report_shows_one_validation_number_and_a_data_split_section() -> None:
    split = {
        "train_docs": 950, "val_docs": 50, "train_bytes": 950_000, "val_bytes": 50_000,
        "mode": "fixed cut", "rule": "v1: blake2b(raw text) ...", "clusters_joined": 3,
        "leakage": {"share": 0.0, "leaked_docs": 0},
    }  # fmt: skip
    comparison = {
        "champion_run": "run-6", "champion_bpb": 1.2, "challenger_run": "run-7",
        "challenger_bpb": 1.098765, "difference": -0.101235, "promoted": True,
        "reason": "no worse", "compared_on": "validation set (40 documents, stored scores)",
        "like_for_like": True,
    }  # fmt: skip
    inputs = make_inputs(split=split, comparison=comparison)
    for page in (render_markdown(inputs, {}), render_html(inputs, {})):
        assert "Data split" in page and "5.0%" in page and "like for like" in page
        assert "0.00% of validation bytes" in page
        # the headline and the comparison show the same validation number, and no other
        assert page.count("1.0988") == 2
        assert "1.0987" not in page and "1.0989" not in page


def test_old_split_keys_are_refused_naming_their_new_place() -> None:
    with pytest.raises(SettingsError, match="moved to cleaned_corpus.val_fraction"):
        check_stages({"token_shards": {"val_fraction": 0.1}}, "my.yaml", stage_settings(ASSETS))
    checked = check_stages(
        {"cleaned_corpus": {"val_fraction": 0.1, "min_val_docs": 5}}, "x", stage_settings(ASSETS)
    )
    assert checked["cleaned_corpus"]["val_fraction"] == 0.1
    with pytest.raises(SettingsError, match="val_fraction"):
        check_stages({"cleaned_corpus": {"val_fraction": 0.6}}, "my.yaml", stage_settings(ASSETS))


def test_a_changed_split_compares_on_the_validation_documents_both_splits_hold() -> None:
    challenger = run("new", 1.0, {**SET, "bytes": 40_000})
    champion = run("old", 1.6, {**SET, "keys_sha256": "other"})
    plan = plan_comparison(challenger, champion, True, SharedText(30, 20_000))
    assert plan.how == SHARED and plan.like_for_like and plan.documents == 30
    assert "30 validation documents of both splits" in plan.text
    # Too little in common: held-out files are the better text when there are some ...
    assert plan_comparison(challenger, champion, True, SharedText(2, 900)).how == EVAL_FILES
    # ... and the few shared documents are used when there are none.
    assert plan_comparison(challenger, champion, False, SharedText(2, 900)).how == SHARED
    # Nothing in common, or keys unknown: as before.
    assert plan_comparison(challenger, champion, False, SharedText(0, 0)).how == NO_FAIR_TEXT
    assert plan_comparison(challenger, champion, False, None).how == NO_FAIR_TEXT
    # The same set never looks at the shared documents.
    same = plan_comparison(challenger, run("old", 1.6, {**SET, "bytes": 40_000}), False,
                           SharedText(1, 1))  # fmt: skip
    assert same.how == STORED


def _cleaned_part(folder: Path, rows: list[tuple[str, str]]) -> Path:
    """A cleaned part with `text`, `split_key` (of the text) and `split` columns."""
    folder.mkdir(parents=True, exist_ok=True)
    texts, sides = [t for t, _ in rows], [s for _, s in rows]
    keys = pa.array([split_key(t) for t in texts], pa.uint64())
    table = pa.table({"text": texts, "split_key": keys, "split": sides})
    pq.write_table(table, folder / "part-00000.parquet")
    return folder / "part-00000.parquet"


def test_validation_keys_round_trip_and_refuse_another_set(tmp_path: Path) -> None:
    rows = [(f"document number {i}", "val" if i % 3 == 0 else "train") for i in range(12)]
    part = _cleaned_part(tmp_path / "cleaned", rows)
    keys = validation_keys([part])
    assert sorted(keys.tolist()) == sorted(split_key(t) for t, s in rows if s == "val")
    identity = {"rule": "v1 ...", "keys_sha256": keys_digest(keys)}
    file = tmp_path / "validation_keys.json"
    write_validation_keys(file, keys, identity)
    assert read_validation_keys(file, identity).tolist() == sorted(keys.tolist())
    assert read_validation_keys(file, {**identity, "keys_sha256": "0" * 64}) is None
    assert read_validation_keys(file, {**identity, "rule": "v2"}) is None
    assert read_validation_keys(tmp_path / "missing.json", identity) is None
    data = json.loads(file.read_text())
    data["keys"] = data["keys"][1:]  # a tampered file no longer hashes to its identity
    file.write_text(json.dumps(data))
    assert read_validation_keys(file, identity) is None
    file.write_text("{not json")
    assert read_validation_keys(file, identity) is None


def test_shared_validation_texts_are_validation_rows_in_both_sets_within_the_budget(
    tmp_path: Path,
) -> None:
    rows = [(f"text {i} " * 10, "val" if i % 2 else "train") for i in range(20)]
    part = _cleaned_part(tmp_path / "cleaned", rows)
    wanted = {rows[i][0] for i in (1, 3, 5, 7, 4)}  # 4 is a training row: never returned
    keys = np.sort(np.array([split_key(t) for t in wanted], np.uint64))
    texts, size = shared_validation_texts([part], keys, max_bytes=10**6)
    assert texts == [rows[i][0] for i in (1, 3, 5, 7)]
    assert size == sum(len(t.encode()) for t in texts)
    first, _ = shared_validation_texts([part], keys, max_bytes=1)
    assert first == [rows[1][0]]  # at least one document
    assert shared_validation_texts([part], np.zeros(0, np.uint64), 10**6) == ([], 0)


def test_shared_texts_need_both_models_keys_for_their_own_sets(tmp_path: Path) -> None:
    from llm_pipeline.report.comparison import shared_texts
    from llm_pipeline.text.split.validation_keys import VALIDATION_KEYS_FILE

    rows = [(f"text {i} " * 10, "val" if i % 2 else "train") for i in range(20)]
    _cleaned_part(tmp_path / "cleaned", rows)
    keys = {i: split_key(rows[i][0]) for i in range(20)}

    def model(name: str, members: list[int], stale: bool = False) -> tuple[ScoredRun, Path]:
        folder = tmp_path / name
        folder.mkdir()
        member_keys = np.array([keys[i] for i in members], np.uint64)
        identity = {"rule": "v1 ...", "keys_sha256": keys_digest(member_keys)}
        written = {**identity, "keys_sha256": "0" * 64} if stale else identity
        write_validation_keys(folder / VALIDATION_KEYS_FILE, member_keys, written)
        return ScoredRun(name, 1.0, {**identity, "bytes": 10**6}), folder

    challenger, mine = model("new", [1, 3, 5, 7, 9])
    champion, theirs = model("old", [5, 7, 9, 11, 13])
    texts, common = shared_texts(tmp_path / "cleaned", challenger, mine, champion, theirs)
    assert texts == [rows[i][0] for i in (5, 7, 9)] and common.documents == 3
    stale, folder = model("stale", [5, 7, 9], stale=True)  # its file names another set
    assert shared_texts(tmp_path / "cleaned", challenger, mine, stale, folder) == ([], None)
    (theirs / VALIDATION_KEYS_FILE).unlink()  # a champion from before the keys were kept
    assert shared_texts(tmp_path / "cleaned", challenger, mine, champion, theirs) == ([], None)
