"""The one filter protocol: every step answers `filter(text) -> (kept, reason)`, a transform
declares `edits_text`, and the pass that runs them counts each drop under the step's name."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from llm_pipeline.text.clean import CleaningConfig
from llm_pipeline.text.filters.basic import KEPT, DocumentFilter, MinCharsFilter, TextTransform
from llm_pipeline.text.filters.filter_pass import FilterPlan, filter_batch
from llm_pipeline.text.filters.profiles import PROFILES
from llm_pipeline.text.filters.quality import C4LineFilter
from llm_pipeline.text.funnel import NORMALIZE

BODY = ("This is a proper sentence with words. " * 6).strip()


@pytest.mark.parametrize("profile", PROFILES)
def test_every_step_of_every_profile_speaks_the_protocol(profile: str) -> None:
    for step in CleaningConfig.from_profile(profile).filters():
        assert isinstance(step, DocumentFilter), step
        assert step.edits_text == isinstance(step, TextTransform)
        for text in ("", "short", BODY, "Menu Home About\n" + BODY):
            kept, reason = step.filter(text)
            assert isinstance(kept, bool)
            assert (reason is None) == kept, (step.name, text, reason)


def test_a_transform_answers_filter_from_its_transform() -> None:
    rule = C4LineFilter()
    assert rule.filter(BODY) == KEPT
    assert rule.filter("Only one sentence here.") == (False, "too_few_sentences")
    assert rule.transform("Menu Home About\n" + BODY).text == BODY


@dataclass(frozen=True)
class _NoDigits(DocumentFilter):
    """A filter written against the protocol alone: it counts nothing itself."""

    name: str = "no_digits"

    def filter(self, text: str) -> tuple[bool, str | None]:
        return (False, "has_digit") if any(c.isdigit() for c in text) else KEPT


def test_the_pass_counts_drops_edits_and_reasons_per_step() -> None:
    plan = FilterPlan((MinCharsFilter(10), C4LineFilter(), _NoDigits()), 2, None)
    texts = ["tiny", "Menu Home About\n" + BODY, BODY + "\nIt has 1 digit in it.", BODY]
    result = filter_batch(texts, ["s"] * len(texts), plan)
    tally = result.tally
    assert result.texts == [BODY, BODY]
    assert dict(tally.dropped) == {"min_chars": 1, "no_digits": 1}
    assert dict(tally.reasons) == {("min_chars", "min_chars"): 1, ("no_digits", "has_digit"): 1}
    assert tally.dropped_bytes["min_chars"] == len("tiny")
    # C4 took the menu line out of the second document.
    assert tally.lines_removed == 1
    assert tally.edited_bytes["c4_lines"] == len("Menu Home About\n")
    assert tally.edited_bytes[NORMALIZE] == 0
    assert sorted(s[1] for s in result.samples) == ["min_chars", "no_digits"]
