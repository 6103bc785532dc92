"""Text that shares passages (issue 21): passage dedup, the bounded split on the corpora that
used to collapse, the leakage figure on popular passages, and the messages of what fails."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_pipeline.checks.split import split_cause
from llm_pipeline.lm.settings import ModelConfig
from llm_pipeline.lm.train.batches import check_data_fits
from llm_pipeline.text.advice import cleaning_advice
from llm_pipeline.text.clean import PASSAGE_DUPLICATE, CleaningConfig, clean_documents
from llm_pipeline.text.dedup.passages import paragraphs, passage_keys, remove_passages
from llm_pipeline.text.split.clusters import BoundedClusters
from llm_pipeline.text.split.leakage import measure_leakage
from llm_pipeline.text.split.sides import SplitSummary, assign_sides
from llm_pipeline.text.split.split_file import read_split
from llm_pipeline.text.store import parquet_parts
from llm_pipeline_tests.corpora import clause_corpus, paragraph, pool_corpus

REPLY = """Thanks, that works for me and the team will follow up on Monday morning.

On Monday 3 June 2024 at 10:15, Alice Smith wrote:
> The original message, with more than eight words in it for sure.
>
> On Sunday 2 June 2024 at 09:00, Bob Jones wrote:
> > An older message whose text also has many words in it, really."""
MESSAGE = """The original message, with more than eight words in it for sure.

On Sunday 2 June 2024 at 09:00, Bob Jones wrote:
> An older message whose text also has many words in it, really."""


def test_a_change_of_quote_depth_starts_a_paragraph() -> None:
    lines = REPLY.split("\n")
    spans = ["\n".join(lines[a:b]) for a, b in paragraphs(REPLY)]
    assert spans[2] == "> The original message, with more than eight words in it for sure."
    assert spans[-1].startswith("> > An older message")
    # Quoted, the message's passages are the message's own: all three are repeats.
    assert set(passage_keys(MESSAGE, 8)) <= set(passage_keys(REPLY, 8))


def test_removing_passages_leaves_normalised_text() -> None:
    result = remove_passages(REPLY, set(passage_keys(MESSAGE, 8)), 8)
    assert result.text == (
        "Thanks, that works for me and the team will follow up on Monday morning.\n\n"
        "On Monday 3 June 2024 at 10:15, Alice Smith wrote:"
    )
    assert len(result.passages) == 3
    untouched = remove_passages(REPLY, {12345}, 8)
    assert untouched.text is REPLY and untouched.passages == []


def _clean(tmp: Path, texts: list[str], **settings):
    tmp.mkdir()
    config = CleaningConfig.from_profile("docs", **settings)
    stats = clean_documents([(texts, [f"f{i}" for i in range(len(texts))])], tmp, config)
    return stats, read_split(tmp)


def test_passage_dedup_is_counted_in_the_funnel_with_a_sample(tmp_path: Path) -> None:
    rng = random.Random(1)
    footer = paragraph(rng, 3, 3)
    texts = [paragraph(rng) + "\n\n" + footer for _ in range(50)]
    texts += [footer + "\n\nThanks."]  # nothing of its own left: dropped
    stats, _ = _clean(tmp_path / "out", texts)
    funnel = {row["step"]: row for row in stats.funnel}
    assert funnel[PASSAGE_DUPLICATE]["docs_removed"] == 1
    footer_bytes = len(footer.encode()) + 2  # with the blank line next to it
    # 49 later copies and the last document's, whose "Thanks." is dropped with it.
    assert funnel[PASSAGE_DUPLICATE]["bytes_removed"] == 50 * footer_bytes + len(b"Thanks.")
    assert stats.passages_removed == 50
    sample = pq.read_table(tmp_path / "out" / "_dropped" / f"{PASSAGE_DUPLICATE}.parquet")
    assert footer in sample.column("text").to_pylist()
    kept = pq.read_table(parquet_parts(tmp_path / "out")).column("text").to_pylist()
    assert sum(footer in text for text in kept) == 1
    stats, _ = _clean(tmp_path / "off", texts, passage_dedup=False)
    assert PASSAGE_DUPLICATE not in stats.dropped and stats.passages_removed == 0


def test_the_pool_corpus_that_collapsed_splits_within_bounds(tmp_path: Path) -> None:
    """The issue's corpus: 300 documents of 2-6 paragraphs from a pool, each paragraph in a
    handful of documents. Every document used to join one cluster and land in validation."""
    texts = pool_corpus(random.Random(0), 300)
    for dedup in (False, True):
        _, split = _clean(tmp_path / f"dedup-{dedup}", texts, passage_dedup=dedup)
        assert split.problem() is None, split.to_dict()
        assert 0.025 <= split.val_share <= 0.10 and split.train_docs > 0
        assert split.largest_unit_share <= 0.05
    # Without passage dedup the links chain everything: the split cut them, and says so.
    _, chained = _clean(tmp_path / "again", texts, passage_dedup=False)
    assert chained.links_cut > 0 and chained.marked_docs > 0
    assert "links cut" in chained.decisions()


def test_popular_passages_count_in_the_leakage_figure(tmp_path: Path) -> None:
    """A clause library without passage dedup: popular clauses sit on both sides. The old
    measure skipped grams in more than 16 documents and reported 0%; now they count."""
    texts = clause_corpus(random.Random(3), 600)
    _clean(tmp_path / "off", texts, passage_dedup=False)
    shared = measure_leakage(parquet_parts(tmp_path / "off"))
    assert shared.overlap > 0.3 and shared.share > 0.01
    _clean(tmp_path / "on", texts)
    deduped = measure_leakage(parquet_parts(tmp_path / "on"))
    assert deduped.share <= 0.01 and deduped.overlap <= 0.05


def test_a_footer_in_every_document_is_seen(tmp_path: Path) -> None:
    rng = random.Random(4)
    footer = paragraph(rng, 6, 6)
    texts = [paragraph(rng, 1, 1) + "\n\n" + footer for _ in range(400)]
    sides = ["val" if i % 20 == 0 else "train" for i in range(400)]
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table({"text": texts, "split": sides}), path)
    leakage = measure_leakage([path])
    assert leakage.leaked_docs == 20 and leakage.share == 1.0  # the footer is most of each
    assert 0.5 < leakage.overlap < 1.0


def test_clusters_stop_at_the_cap_and_remember_what_they_cut() -> None:
    clusters = BoundedClusters(np.full(6, 10), cap=30)
    a, b = np.array([0, 1, 2, 3, 4]), np.array([1, 2, 3, 4, 5])  # a chain
    clusters.link(a, b)
    roots = clusters.roots()
    assert np.bincount(roots).max() == 3 and len(set(roots.tolist())) == 2
    cut, marked = clusters.cut_between(roots)
    assert cut == 1 and marked[roots[2]] and marked[roots[3]]


def test_marked_units_train_unless_validation_needs_them() -> None:
    keys = np.arange(1, 101, dtype=np.uint64) * np.uint64(2**56)
    sizes = np.full(100, 100)
    marked = np.zeros(100, dtype=bool)
    marked[:50] = True
    is_val, split = assign_sides(keys, sizes, np.arange(100), 0.05, 1, marked)
    assert not (is_val & marked).any() and split.problem() is None
    marked[:] = True
    marked[0] = False  # one clean unit cannot hold 2.5% of the bytes: marked ones fill it
    is_val, split = assign_sides(keys, sizes, np.arange(100), 0.05, 1, marked)
    assert split.problem() is None and split.marked_val_docs == is_val.sum() - is_val[0]


def test_too_few_units_say_so_in_one_line_with_the_fix() -> None:
    sizes = np.array([40_000, 30_000, 30_000])
    _, split = assign_sides(np.arange(3, dtype=np.uint64), sizes, np.arange(3), 0.05, 1)
    problem = split.problem()
    assert problem is not None and "\n" not in problem
    assert "too few units" in problem and "max_doc_chars" in problem
    assert split.val_docs == 1 and split.train_docs == 2


def _summary(**fields) -> SplitSummary:
    base = dict(rule="v2: x", mode="sized", val_fraction=0.05, min_val_docs=20, keys_sha256="",
                train_docs=95, val_docs=5, train_bytes=950, val_bytes=50)  # fmt: skip
    return SplitSummary(**{**base, **fields})


def test_the_split_check_names_the_cause() -> None:
    assert "training side is empty" in split_cause(_summary(), 1.0)
    assert "do not match split.json" in split_cause(_summary(), 1.0)
    old = _summary(rule="v1: blake2b", train_docs=0, val_docs=100, train_bytes=0, val_bytes=1000)
    assert "older rule (v1)" in split_cause(old, 1.0)
    giant = _summary(largest_unit_share=1.0, train_docs=0, val_docs=100, train_bytes=0,
                     val_bytes=1000)  # fmt: skip
    assert "one cluster holds 100% of the bytes" in split_cause(giant, 1.0)


def test_the_trainer_names_the_split_when_a_side_is_empty(tmp_path: Path) -> None:
    np.zeros(0, np.uint16).tofile(tmp_path / "train.bin")
    np.arange(500, dtype=np.uint16).tofile(tmp_path / "val.bin")
    (tmp_path / "meta.json").write_text('{"dtype": "uint16", "vocab_size": 600}')
    with pytest.raises(ValueError, match="training side of the split is empty") as err:
        check_data_fits(tmp_path, ModelConfig(vocab_size=600, block_size=64))
    assert "block_size" not in str(err.value)


def test_advice_for_a_corpus_mostly_of_repeats(tmp_path: Path) -> None:
    rng = random.Random(5)
    shared = [paragraph(rng, 7, 8) for _ in range(20)]  # each in about ten documents
    texts = [rng.choice(shared) + "\n\n" + paragraph(rng, 2, 2) for _ in range(200)]
    stats, _ = _clean(tmp_path / "out", texts)
    advice = cleaning_advice(stats, CleaningConfig(), tmp_path / "out" / "_dropped")
    assert advice is not None and advice.step == PASSAGE_DUPLICATE
    assert "passage_dedup: false" in advice.message("docs")


def test_documents_that_differ_only_in_repeats_are_judged_again(tmp_path: Path) -> None:
    """Two support answers framed alike around different macros: without their macros they
    are the same text (kept once); one left too short for min_chars is dropped."""
    rng = random.Random(6)
    macros = [paragraph(rng, 3, 3) for _ in range(2)]
    frame = ("Hello to the whole team,", "Best regards, Alice Smith")  # short: not passages
    texts = [
        macros[0],
        macros[1],
        f"{frame[0]}\n\n{macros[0]}\n\n{frame[1]}",
        f"{frame[0]}\n\n{macros[1]}\n\n{frame[1]}",
        macros[0] + "\n\nOne two three four five six seven eight.",
    ]
    stats, _ = _clean(tmp_path / "out", texts, min_chars=45)
    table = pq.read_table(parquet_parts(tmp_path / "out")).to_pydict()
    assert len(set(table["doc_id"])) == len(table["doc_id"]) == 3  # the macros and one frame
    assert sum(text.startswith(frame[0]) for text in table["text"]) == 1
    reasons = stats.reasons[PASSAGE_DUPLICATE]
    assert reasons["the same as an earlier document without its repeats"] == 1
    assert any(reason.startswith("then fails min_chars") for reason in reasons)
    assert stats.bytes_in - stats.bytes_out == sum(stats.dropped_bytes.values()) + sum(
        stats.edited_bytes.values()
    )


def test_a_removed_quote_keeps_the_paragraphs_around_it_apart() -> None:
    text = "My answer comes first in this reply.\n> " + MESSAGE.split("\n")[0] + "\nAnd more."
    quoted = set(passage_keys(MESSAGE, 8))
    assert remove_passages(text, quoted, 8).text == (
        "My answer comes first in this reply.\n\nAnd more."
    )


def test_a_passage_removed_from_many_documents_is_sampled_once(tmp_path: Path) -> None:
    rng = random.Random(8)
    footer = paragraph(rng, 3, 3)
    texts = [paragraph(rng) + "\n\n" + footer for _ in range(30)]
    _clean(tmp_path / "out", texts)
    sample = pq.read_table(tmp_path / "out" / "_dropped" / f"{PASSAGE_DUPLICATE}.parquet")
    assert sample.column("text").to_pylist() == [footer]


def test_pairs_of_document_numbers_spread_over_the_spill(tmp_path: Path) -> None:
    from llm_pipeline.text.dedup.exact import KeySpill

    codes = (np.arange(1000, dtype=np.uint64) << np.uint64(32)) | np.uint64(7)  # small numbers
    for spread, least in ((False, 1), (True, 200)):
        spill = KeySpill(tmp_path / f"spill-{spread}", spread=spread, buffer_records=100)
        spill.add(np.concatenate([codes, codes]), np.arange(2000, dtype=np.uint32))
        partitions = list(spill.iter_partitions())
        assert len(partitions) >= least
        for records in partitions:  # equal keys always share a partition
            _, counts = np.unique(records["key"], return_counts=True)
            assert (counts == 2).all()
    small = KeySpill(tmp_path / "in-memory")  # under its buffer: resolved without files
    small.add(codes, np.arange(1000, dtype=np.uint32))
    (records,) = list(small.iter_partitions())
    assert len(records) == 1000 and not list((tmp_path / "in-memory").iterdir())


def test_the_report_says_what_the_split_did_and_when_it_is_out_of_bounds() -> None:
    from llm_pipeline.report.content import split_sentences

    cut = _summary(units=40, clusters_joined=60, links_cut=12, marked_docs=9)
    text = " ".join(split_sentences(cut.to_dict(), {}))
    assert "12 links cut" in text and "9 documents at their ends train" in text
    assert "Outside the bounds" not in text
    few = _summary(units=3, val_docs=1, val_bytes=300, train_docs=2, train_bytes=700,
                   within_bounds=False, smallest_unit_share=0.3)  # fmt: skip
    text = " ".join(split_sentences({**few.to_dict(), "leakage": {"share": 0.0}}, {}))
    assert "Outside the bounds: validation holds 30.0% of the bytes" in text
    assert "13-grams" not in text  # a figure measured before issue 21 is not made up


def test_a_popular_gram_links_every_document_to_its_first(tmp_path: Path) -> None:
    """The clustering pairs a gram's first 16 documents with each other and every later one
    with the first (linear, not quadratic): a licence in 40 files links all 40."""
    from llm_pipeline.text.dedup.exact import KeySpill
    from llm_pipeline.text.split.clusters import MAX_GRAM_DOCS, gram_pair_counts

    spill = KeySpill(tmp_path / "grams")
    docs = np.arange(40, dtype=np.uint32)
    spill.add(np.full(40, 12345, dtype=np.uint64), docs)
    a, b, counts = (np.concatenate(x) for x in zip(*gram_pair_counts(spill, tmp_path / "p")))
    pairs = set(zip(a.tolist(), b.tolist()))
    first = MAX_GRAM_DOCS * (MAX_GRAM_DOCS - 1) // 2
    assert len(pairs) == first + (40 - MAX_GRAM_DOCS) and (counts == 1).all()
    assert {(0, d) for d in range(1, 40)} <= pairs
