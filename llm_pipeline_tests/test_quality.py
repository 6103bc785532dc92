"""Quality filters (Gopher, C4), profiles, MinHash near-dedup, bounded spills and the funnel."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey

from llm_pipeline.report.render import FUNNEL_IMAGE, ReportInputs, write_report
from llm_pipeline.text.clean import (
    DROPPED_DIR,
    EXACT_DUPLICATE,
    NEAR_DUPLICATE,
    NORMALIZE,
    CleaningConfig,
    clean_documents,
)
from llm_pipeline.text.dedup.exact import EXACT, KEEP, KeySpill, mark_exact_duplicates
from llm_pipeline.text.dedup.minhash import MinHashConfig, MinHasher, shingle_jaccard
from llm_pipeline.text.filters.profiles import PROFILES
from llm_pipeline.text.filters.quality import (
    C4LineFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from llm_pipeline.text.store import parquet_parts
from llm_pipeline.tokens.shards import read_meta
from llm_pipeline_tests.conftest import WORDS, make_document
from llm_pipeline_tests.test_pipeline import failures, make_corpus, run

# A legitimate book passage (Hamlet III.1): verse lines without terminal punctuation and a
# repeated speaker line, which web rules would cut.
BOOK = """HAMLET.
To be, or not to be, that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles,
And by opposing end them? To die: to sleep;
No more; and by a sleep to say we end
The heart-ache and the thousand natural shocks
That flesh is heir to, 'tis a consummation
Devoutly to be wish'd.

OPHELIA.
Good my lord,
How does your honour for this many a day?

HAMLET.
I humbly thank you; well, well, well."""

CODE = '''def moving_average(values: list[float], window: int) -> list[float]:
    """Average of each run of `window` values."""
    if window <= 0:
        raise ValueError("window must be positive")
    out = []
    total = 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        if i >= window - 1:
            out.append(total / window)
    return out
'''

DOCSTRING = "Return the absolute value of the argument."
DOCSTRING_LONG = """Split the pathname path into a pair (root, ext).

>>> splitext('foo.tar.gz')
('foo.tar', '.gz')
...
See also: os.path.basename(), os.path.dirname()."""


def _prose(rng: random.Random, n_words: int) -> str:
    return make_document(rng, n_words)


# --- Gopher quality -------------------------------------------------------------------------


def test_gopher_quality_keeps_prose_and_names_each_failure(rng: random.Random) -> None:
    rule = GopherQualityFilter()
    assert rule.filter(_prose(rng, 120))[1] is None
    prose = _prose(rng, 120)
    cases = {
        "too_few_words": "the cat and the dog sat on the mat",
        "too_many_words": " ".join(["the and word"] * 40_000),
        "mean_word_length_low": " ".join(["a be to of"] * 30),
        "mean_word_length_high": " ".join(["the and"] + ["incomprehensibilities"] * 60),
        "too_many_hashes": prose + " #tag" * 30,
        "too_many_ellipses": prose + " wait..." * 30,
        "too_many_bullet_lines": "\n".join(f"- the item and thing number {i}" for i in range(20)),
        "too_many_ellipsis_lines": "\n".join(
            f"the story and its ending number {i} goes on and on for a while in town..."
            for i in range(10)
        ),
        "too_few_alpha_words": prose + " 12 34 56 78 90" * 40,
        "too_few_stop_words": " ".join(["river mountain garden letter window"] * 20),
    }
    for reason, text in cases.items():
        assert rule.filter(text)[1] == reason, reason
        assert not rule.filter(text)[0]


def test_gopher_quality_thresholds_turn_off(rng: random.Random) -> None:
    text = " ".join(["river mountain garden letter window"] * 20)
    assert GopherQualityFilter(min_stop_words=0).filter(text)[0]
    assert GopherQualityFilter(min_words=0).filter("the cat and the dog sat")[0]


def test_gopher_quality_counts_punctuated_words_as_alphabetic() -> None:
    # datatrove's spaCy tokens make "," and ";" words and drop a third of Shakespeare for it.
    assert GopherQualityFilter(min_words=20).filter(BOOK)[1] is None


# --- Gopher repetition ----------------------------------------------------------------------


def _reference_repetition(text: str, rule: GopherRepetitionFilter) -> str | None:
    """The n-gram rules written the slow, obvious way (no bounds, no numpy)."""
    words = text.split()
    n_chars = len(text)
    for n, limit in rule.top_ngram_char_fractions:
        grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
        if not grams:
            continue
        counts = Counter(grams)
        top = max(counts.values())
        if top < 2:
            continue
        gram = next(g for g in grams if counts[g] == top)
        if len(gram) * top / n_chars > limit:
            return f"top_{n}_gram_char_fraction"
    for n, limit in rule.dup_ngram_char_fractions:
        seen: set = set()
        covered = [False] * len(words)
        for i in range(len(words) - n + 1):
            gram = tuple(words[i : i + n])
            if gram in seen:
                covered[i : i + n] = [True] * n
            seen.add(gram)
        chars = sum(len(w) for w, c in zip(words, covered) if c)
        if chars / n_chars > limit:
            return f"dup_{n}_gram_char_fraction"
    return None


def test_gopher_repetition_ngram_rules_match_a_plain_reference() -> None:
    rng = random.Random(11)
    rule = GopherRepetitionFilter(
        max_dup_line_fraction=0,
        max_dup_paragraph_fraction=0,
        max_dup_line_char_fraction=0,
        max_dup_paragraph_char_fraction=0,
    )
    vocab = WORDS[:12]
    seen_reasons = set()
    for _ in range(400):
        words = [rng.choice(vocab if rng.random() < 0.5 else WORDS) for _ in range(60)]
        if rng.random() < 0.5:  # plant a repeated phrase
            phrase = words[: rng.randint(2, 12)]
            for _ in range(rng.randint(1, 4)):
                at = rng.randint(0, len(words))
                words[at:at] = phrase
        text = " ".join(words)
        expected = _reference_repetition(text, rule)
        assert rule.filter(text)[1] == expected, text
        seen_reasons.add(expected)
    assert None in seen_reasons and len(seen_reasons) >= 4  # both outcomes were exercised


def test_gopher_repetition_lines_and_paragraphs(rng: random.Random) -> None:
    rule = GopherRepetitionFilter()
    assert rule.filter(_prose(rng, 200))[1] is None
    lines = [f"line {i} of the page" for i in range(6)] + ["Subscribe now!"] * 6
    assert rule.filter("\n".join(lines))[1] == "dup_line_fraction"
    paragraph = _prose(rng, 30)
    doc = "\n\n".join([paragraph, _prose(rng, 30), paragraph, paragraph])
    assert rule.filter(doc)[1] == "dup_paragraph_fraction"
    spam = _prose(rng, 20) + " " + " ".join(["buy cheap pills now"] * 30)
    assert rule.filter(spam)[1] is not None


# --- C4 lines -------------------------------------------------------------------------------


def test_c4_removes_bad_lines_keeps_paragraphs_and_counts() -> None:
    good = [
        "The first sentence is here. And a second one follows it.",
        "Another line with enough words ends well! Yes it does.",
        "A third good line is this one. It has two sentences.",
    ]
    text = "\n".join(
        [
            good[0],
            "Menu Home About",  # no terminal punctuation
            "Please enable JavaScript to view this page.",
            "This site uses cookies to improve your experience.",
            "Ok.",  # too few words
            "",
            good[1],
            good[2] + " [1]",
        ]
    )
    result = C4LineFilter().transform(text)
    assert result.reason is None
    assert result.lines_removed == 4
    assert result.text == "\n".join([good[0], "", good[1], good[2]])


def test_c4_drops_whole_documents() -> None:
    rule = C4LineFilter()
    body = "This is a proper sentence with words. " * 6
    assert (
        rule.transform(body + "\nLorem ipsum dolor sit amet, consectetur.").reason == "lorem_ipsum"
    )
    assert rule.transform(body + "\nfunction f() { return 1; }.").reason == "curly_bracket"
    assert rule.transform("Only one sentence here.").reason == "too_few_sentences"
    kept = rule.transform(body)
    assert kept.reason is None and kept.text == body and kept.lines_removed == 0
    # Only lines that survive the line rules count: a removed line cannot drop the document.
    with_code = rule.transform(body + "\nvar config = {debug: true}")
    assert with_code.reason is None and with_code.lines_removed == 1


# --- Profiles -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "text"),
    [("books", BOOK), ("code", CODE), ("docs", DOCSTRING), ("docs", DOCSTRING_LONG)],
)
def test_profiles_keep_their_kind_of_text(tmp_path: Path, profile: str, text: str) -> None:
    stats, rows = _clean(tmp_path, [text], CleaningConfig.from_profile(profile))
    assert stats.docs_out == 1, stats.reasons
    assert rows[0]["text"] == text.rstrip()


def test_web_profile_is_stricter_than_the_others(tmp_path: Path) -> None:
    stats, _ = _clean(tmp_path, [BOOK, CODE, DOCSTRING], CleaningConfig.from_profile("web"))
    assert stats.docs_out == 0
    assert stats.dropped["c4_lines"] >= 2


def test_profile_and_override_errors_name_the_choices() -> None:
    assert CleaningConfig().profile == "docs" and set(PROFILES) == {"web", "books", "docs", "code"}
    with pytest.raises(ValueError, match="unknown cleaning profile 'news'.*web"):
        CleaningConfig.from_profile("news")
    with pytest.raises(ValueError, match="quality has no 'min_wrds'"):
        CleaningConfig.from_profile("web", **{"quality.min_wrds": 3})
    config = CleaningConfig.from_profile("web", **{"quality.min_words": 20.0, "c4_lines": False})
    assert config.quality.min_words == 20 and isinstance(config.quality.min_words, int)
    assert not config.c4_lines and "c4_lines" not in [f.name for f in config.filters()]


# --- MinHash --------------------------------------------------------------------------------


def _edit(rng: random.Random, text: str, n_edits: int) -> str:
    words = text.split()
    for _ in range(n_edits):
        words[rng.randrange(len(words))] = rng.choice(["alpha", "beta", "gamma", "delta"])
    return " ".join(words)


def test_minhash_estimates_jaccard_and_is_deterministic(rng: random.Random) -> None:
    hasher = MinHasher(MinHashConfig(bands=16, rows=8))
    base = _prose(rng, 400)
    texts = [base, _edit(rng, base, 4), _edit(rng, base, 40), _prose(rng, 400), "one two"]
    sig = hasher.signatures(texts)
    again = MinHasher(MinHashConfig(bands=16, rows=8)).signatures(list(reversed(texts)))[::-1]
    assert np.array_equal(sig, again)  # same seed, any batch order → same signatures
    for j in (1, 2, 3):
        true = shingle_jaccard(texts[0], texts[j])
        assert abs((sig[0] == sig[j]).mean() - true) < 0.12, (j, true)
    assert (sig[4] != np.iinfo(np.uint32).max).all()  # a short doc still gets a signature


def test_near_dedup_finds_planted_copies_and_keeps_distinct(tmp_path: Path) -> None:
    rng = random.Random(5)
    distinct = [_prose(rng, 300) for _ in range(40)]
    near = [_edit(rng, distinct[i], 3) for i in range(0, 40, 4)]  # 10 copies, J ≈ 0.9
    assert min(shingle_jaccard(distinct[i * 4], t) for i, t in enumerate(near)) > 0.85
    docs = distinct + near + [distinct[7]]  # and one exact copy
    stats, rows = _clean(tmp_path, docs, CleaningConfig())
    assert stats.dropped[NEAR_DUPLICATE] == 10
    assert stats.dropped[EXACT_DUPLICATE] == 1
    assert [r["text"] for r in rows] == distinct  # first copies kept, in order


def test_near_dedup_off_keeps_near_copies(tmp_path: Path) -> None:
    rng = random.Random(6)
    base = _prose(rng, 300)
    stats, rows = _clean(tmp_path, [base, _edit(rng, base, 3)], CleaningConfig(near_dedup=False))
    assert len(rows) == 2 and NEAR_DUPLICATE not in stats.dropped


def test_key_spill_resolves_like_a_set(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 50, size=5000).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    spill = KeySpill(tmp_path / "spill", partitions=8, buffer_records=300)  # many flushes
    for lo in range(0, len(keys), 700):
        spill.add(keys[lo : lo + 700], np.arange(lo, min(lo + 700, len(keys)), dtype=np.uint32))
    decision = np.zeros(len(keys), np.uint8)
    assert mark_exact_duplicates(spill, decision) == len(keys) - len(set(keys.tolist()))
    seen: set = set()
    for i, key in enumerate(keys.tolist()):
        assert decision[i] == (EXACT if key in seen else KEEP)
        seen.add(key)
    assert len(list((tmp_path / "spill").glob("keys-*.bin"))) == 8


# --- Funnel ---------------------------------------------------------------------------------


def _clean(tmp_path: Path, docs: list[str], config: CleaningConfig, workers: int = 1):
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    batches = [
        (docs[i : i + 9], [f"src{i}"] * len(docs[i : i + 9])) for i in range(0, len(docs), 9)
    ]
    stats = clean_documents(batches, out, config, workers=workers)
    rows = [r for p in parquet_parts(out) for r in pq.read_table(p).to_pylist()]
    return stats, rows


def _mixed_corpus(seed: int) -> list[str]:
    rng = random.Random(seed)
    docs = [_prose(rng, rng.randint(60, 300)) for _ in range(60)]
    docs += [_edit(rng, d, 2) for d in docs[:8]]
    docs += docs[:5]
    docs += ["x", "", "  \r\n", "#### #### ####", "Menu\nHome\nAbout\nContact"]
    docs += ["\n".join(["Subscribe to our newsletter today."] * 12)]
    docs += [d.replace("\n", " \t\r\n") for d in docs[10:14]]  # normalisation edits bytes
    docs += ["Lorem ipsum dolor sit amet. " * 10]
    rng.shuffle(docs)
    return docs


@pytest.mark.parametrize("profile", ["web", "docs"])
def test_funnel_adds_up_and_samples_are_bounded(tmp_path: Path, profile: str) -> None:
    docs = _mixed_corpus(1)
    config = CleaningConfig.from_profile(profile, dropped_sample_size=2)
    stats, rows = _clean(tmp_path, docs, config)
    assert stats.docs_in == len(docs)
    assert stats.docs_in - stats.docs_out == sum(stats.dropped.values())
    removed = sum(stats.dropped_bytes.values()) + sum(stats.edited_bytes.values())
    assert stats.bytes_in - stats.bytes_out == removed
    assert stats.bytes_in == sum(len(d.encode()) for d in docs)
    assert stats.bytes_out == sum(len(r["text"].encode()) for r in rows)
    assert stats.edited_bytes[NORMALIZE] > 0
    funnel = stats.funnel
    assert [r["step"] for r in funnel] == config.step_names()
    assert funnel[-1]["docs_left"] == stats.docs_out == len(rows)
    assert funnel[-1]["bytes_left"] == stats.bytes_out
    for name, count in stats.dropped.items():
        assert sum(stats.reasons.get(name, {}).values()) == count
    dropped_dir = tmp_path / "out-0" / DROPPED_DIR
    files = {p.stem: pq.read_table(p) for p in dropped_dir.glob("*.parquet")}
    assert set(files) == {name for name, count in stats.dropped.items() if count}
    for name, table in files.items():
        assert table.num_rows == min(2, stats.dropped[name])
        assert set(table.column("filter").to_pylist()) == {name}
    assert stats.dropped[NEAR_DUPLICATE] >= 1 and stats.dropped[EXACT_DUPLICATE] >= 1


def test_workers_give_identical_output_and_counts(tmp_path: Path) -> None:
    docs = _mixed_corpus(2)
    config = CleaningConfig.from_profile("web")
    one, rows_one = _clean(tmp_path, docs, config, workers=1)
    two, rows_two = _clean(tmp_path, docs, config, workers=2)
    assert rows_one == rows_two
    assert one.funnel == two.funnel and one.reasons == two.reasons


def test_report_shows_the_cleaning_funnel(tmp_path: Path) -> None:
    stats, _ = _clean(tmp_path, _mixed_corpus(3), CleaningConfig.from_profile("web"))
    inputs = ReportInputs("r", {}, {}, [], [], {"difference": None}, cleaning=stats.to_dict())
    written = write_report(tmp_path / "report", inputs)
    assert (tmp_path / "report" / f"{FUNNEL_IMAGE}.png").read_bytes().startswith(b"\x89PNG")
    markdown = written["markdown_path"].read_text()
    assert "## Cleaning funnel" in markdown and "| near\\_duplicate |" in markdown
    assert f"{FUNNEL_IMAGE}.png" in markdown
    assert "Cleaning funnel" in written["html_path"].read_text()


def test_cleaned_corpus_asset_writes_funnel_and_samples(data_root: Path, instance) -> None:
    make_corpus(data_root / "raw" / "funnel")
    # make_document writes one-sentence paragraphs: C4's 5-sentence minimum would leave 1 doc.
    settings = {"workers": 1, "profile": "web", "thresholds": {"c4.min_sentences": 1}}
    result = run(instance, "funnel", {"cleaned_corpus": {"config": settings}})  # + checks
    assert result.success
    # Downstream readers and the check ignore _dropped/ (its samples never reach training).
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations)
    assert "cleaned_corpus_expectations" in {e.check_name for e in evaluations}
    meta = read_meta(data_root / "tokens" / "funnel")
    shard_docs = meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"]
    cleaned_rows = sum(
        pq.ParquetFile(p).metadata.num_rows for p in parquet_parts(data_root / "cleaned" / "funnel")
    )
    assert shard_docs == cleaned_rows
    folder = data_root / "cleaned" / "funnel"
    saved = json.loads((folder / "cleaning.json").read_text())
    assert saved["config"]["profile"] == "web"
    stats = saved["stats"]
    assert stats["docs_in"] - stats["docs_out"] == sum(stats["dropped"].values())
    assert (folder / "funnel.png").read_bytes().startswith(b"\x89PNG")
    assert list((folder / DROPPED_DIR).glob("*.parquet"))  # web rules remove something here
    assert not (folder / ".scratch").exists()
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == AssetKey("cleaned_corpus")
    ]
    metadata = event.materialization.metadata
    assert "data:image/png;base64," in metadata["funnel"].value
    assert metadata["profile"].value == "web"


def test_bad_threshold_key_fails_with_a_clear_message(data_root: Path, instance) -> None:
    make_corpus(data_root / "raw" / "badkey")
    config = {"cleaned_corpus": {"config": {"workers": 1, "thresholds": {"quality.nope": 1.0}}}}
    result = run(
        instance, "badkey", config, selection=[AssetKey("raw_corpus"), AssetKey("cleaned_corpus")]
    )
    assert not result.success
    (message,) = failures(result)
    assert "quality has no 'nope'" in message
