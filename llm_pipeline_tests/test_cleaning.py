"""Normalisation, each filter (documents that must pass and must fail), dedup and the funnel."""

from __future__ import annotations

import random
import re
import unicodedata
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llm_pipeline.text.clean import (
    EXACT_DUPLICATE,
    CleaningConfig,
    clean_documents,
    document_id,
)
from llm_pipeline.text.filters.basic import (
    DuplicateLinesFilter,
    MaxCharsFilter,
    MinCharsFilter,
    MinWordsFilter,
    NonAlnumFractionFilter,
    duplicate_line_fraction,
    non_alnum_fraction,
)
from llm_pipeline.text.filters.normalize import CONTROL_CHARS_REGEX, normalize_text
from llm_pipeline.text.store import parquet_parts
from llm_pipeline_tests.conftest import make_document


def test_normalize_nfc_newlines_controls_whitespace() -> None:
    decomposed = "Cafe\u0301"
    assert normalize_text(decomposed) == unicodedata.normalize("NFC", decomposed) == "Café"
    assert normalize_text("a\r\nb\rc\u2028d") == "a\nb\nc\nd"


def test_normalize_removes_control_characters_keeps_tab_and_newline() -> None:
    assert normalize_text("a\x00b\x1bc\x7fd\x9fe\ufefff\tg\nh") == "abcdef\tg\nh"


def test_normalize_trailing_whitespace_and_blank_runs() -> None:
    text = "\n\n  indented   \nline two\t \n\n\n\n\nafter gap   \n\n"
    assert normalize_text(text) == "  indented\nline two\n\nafter gap"


def test_normalize_is_idempotent_and_linear_on_long_space_runs() -> None:
    text = "x" + " " * 200_000 + "y"
    assert normalize_text(text) == text
    messy = "A\r\n\r\n\r\nB  \x01"
    assert normalize_text(normalize_text(messy)) == normalize_text(messy)


def test_control_regex_matches_what_normalisation_removes() -> None:
    pattern = re.compile(CONTROL_CHARS_REGEX)
    controls = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc"]
    assert len(controls) == 65
    for char in controls:
        if char in "\t\n\r\x85":  # kept, or turned into a newline
            continue
        assert pattern.search(char), hex(ord(char))
        assert normalize_text(f"a{char}b") == "ab"
    assert not pattern.search("plain text, ünïcode and\ttabs\n")


@pytest.mark.parametrize(
    ("rule", "keeps", "drops"),
    [
        (MinCharsFilter(10), "long enough text", "short"),
        (MaxCharsFilter(10), "tiny text", "this is far too long"),
        (MinWordsFilter(3), "three words here", "two words"),
        (NonAlnumFractionFilter(0.5), "def f(x): return x + 1", "}{}{}{ ;;;; ---- !!! a"),
        (DuplicateLinesFilter(0.5), "a\nb\nc\na", "spam\nspam\nspam\nspam\nok"),
    ],
)
def test_each_filter_keeps_and_drops(rule, keeps: str, drops: str) -> None:
    assert rule.filter(keeps)[0]
    assert not rule.filter(drops)[0]


def test_filters_turned_off() -> None:
    assert MaxCharsFilter(0).filter("x" * 10**6)[0]
    assert MinWordsFilter(0).filter("")[0]
    assert NonAlnumFractionFilter(1.0).filter("!!!!")[0]
    assert DuplicateLinesFilter(1.0).filter("a\na\na")[0]


def test_fraction_helpers() -> None:
    assert non_alnum_fraction("ab  cd") == 0.0
    assert non_alnum_fraction("a!") == 0.5
    assert non_alnum_fraction("   ") == 1.0
    assert duplicate_line_fraction("a\nb\na\na") == 0.5
    assert duplicate_line_fraction("") == 0.0


def _clean(tmp_path: Path, docs: list[str], workers: int = 1, **config):
    out = tmp_path / f"out-{workers}"
    out.mkdir()
    batches = [
        (docs[i : i + 7], [f"src{i}" for _ in docs[i : i + 7]]) for i in range(0, len(docs), 7)
    ]
    stats = clean_documents(batches, out, CleaningConfig(**config), workers=workers)
    rows = [r for p in parquet_parts(out) for r in pq.read_table(p).to_pylist()]
    return stats, rows


def test_clean_dedups_exactly_after_normalisation_and_counts_add_up(tmp_path: Path) -> None:
    rng = random.Random(7)
    good = [make_document(rng, 40) for _ in range(30)]
    docs = [*good, good[0], good[1] + "   \n\n\n", "tiny", "}{}{}{ ;;;; ---- !!! a ??? ###"]
    # Gopher quality off: the symbol soup must reach the basic symbol filter it is made for.
    stats, rows = _clean(tmp_path, docs, gopher_quality=False)
    assert stats.docs_in == len(docs)
    assert stats.dropped[EXACT_DUPLICATE] == 2
    assert stats.dropped["min_chars"] == 1
    assert stats.dropped["non_alnum_fraction"] == 1
    assert stats.docs_in - sum(stats.dropped.values()) == stats.docs_out == len(rows) == 30
    assert [r["text"] for r in rows] == [normalize_text(d) for d in good]
    assert all(r["doc_id"] == document_id(r["text"]) for r in rows)
    assert all(r["n_chars"] == len(r["text"]) for r in rows)
    assert len({r["doc_id"] for r in rows}) == len(rows)
    assert stats.bytes_out == sum(len(r["text"].encode()) for r in rows)


def test_clean_in_worker_processes_gives_identical_output(tmp_path: Path) -> None:
    rng = random.Random(3)
    docs = [make_document(rng, rng.randint(1, 80)) for _ in range(200)]
    docs += docs[:20]
    one, rows_one = _clean(tmp_path, docs, workers=1)
    two, rows_two = _clean(tmp_path, docs, workers=2)
    assert rows_one == rows_two
    assert one.dropped == two.dropped


def _reference_normalize(text: str) -> str:
    """The normalisation rules written the slow, obvious way (no fast paths)."""
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"\r\n?|[\u2028\u2029\x85]", "\n", text)
    text = re.sub(CONTROL_CHARS_REGEX, "", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.lstrip("\n").rstrip()


def _reference_non_alnum(text: str) -> float:
    visible = [c for c in text if not c.isspace()]
    if not visible:
        return 1.0
    return 1.0 - sum(c.isalnum() for c in visible) / len(visible)


def test_fast_paths_agree_with_reference_on_random_text() -> None:
    rng = random.Random(5)
    alphabet = [
        *"ab Z9_.,;\t\n\r\x00\x0b\x1c\x7f\x85\u00a0\u2028\u3000",
        *("e\u0301", "é", "ß", "中", "٣", "😀", "\ufeff", "  \n", "\n\n\n", " \t\r\n"),
    ]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert normalize_text(text) == _reference_normalize(text), repr(text)
        assert non_alnum_fraction(text) == pytest.approx(_reference_non_alnum(text)), repr(text)


def test_empty_documents_are_dropped_even_with_every_filter_off(tmp_path: Path) -> None:
    off = {
        "min_chars": 0,
        "max_chars": 0,
        "min_words": 0,
        "max_non_alnum_fraction": 1.0,
        "max_duplicate_line_fraction": 1.0,
    }
    stats, rows = _clean(tmp_path, ["\x01\x02  \n\n", "", "kept"], **off)
    assert [r["text"] for r in rows] == ["kept"]
    assert stats.dropped["empty"] == 2
