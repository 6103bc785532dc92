"""Promotion only on text neither model trained on, one validation number in the report, and
the split settings in their one place."""

from __future__ import annotations

import pytest

from llm_pipeline.report.promotion import (
    EVAL_FILES,
    NO_FAIR_TEXT,
    RESCORE,
    STORED,
    ScoredRun,
    no_fair_comparison,
    plan_comparison,
)
from llm_pipeline.report.render import render_html, render_markdown
from llm_pipeline.run_config import check_stages
from llm_pipeline.settings import SettingsError
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
        check_stages({"token_shards": {"val_fraction": 0.1}}, "my.yaml")
    checked = check_stages({"cleaned_corpus": {"val_fraction": 0.1, "min_val_docs": 5}}, "x")
    assert checked["cleaned_corpus"]["val_fraction"] == 0.1
    with pytest.raises(SettingsError, match="val_fraction"):
        check_stages({"cleaned_corpus": {"val_fraction": 0.6}}, "my.yaml")
