"""Property tests of the split, passage dedup and the leakage measure (issue 21), on the core.

Hypothesis draws corpora of many shapes (`corpora.py`: distinct documents, near-copies,
documents assembled from a shared pool, clause libraries, chains of quoted replies, one footer in
every document, one long book, a few huge documents, hundreds of tiny ones), sizes, seeds and
`val_fraction`s, and checks the invariants the split promises:

- both sides hold documents and validation holds [val_fraction / 2, 2 × val_fraction] of the
  bytes whenever the corpus has units small enough to fill it (else the split says "too few
  units" and still keeps both sides);
- with the default settings, at most 1% of validation bytes leak (every 8-gram counted);
- a cleaning change that edits texts, and 10% more documents, move at most 5% of the surviving
  documents to the other side;
- passage dedup keeps every long passage exactly once;
- the leakage measure equals a brute-force count.

The examples are derandomised (the same ones on every run, so CI is repeatable) and few, because
each one cleans a corpus. To search further, with fresh random examples each run:

    LLM_PIPELINE_SEARCH_EXAMPLES=200 .venv/bin/python -m pytest \
        llm_pipeline_tests/test_split_properties.py
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_pipeline.text.clean import CleaningConfig, clean_documents
from llm_pipeline.text.dedup.minhash import normalized_words
from llm_pipeline.text.dedup.passages import passage_keys
from llm_pipeline.text.filters.normalize import normalize_text
from llm_pipeline.text.split.leakage import MAX_LEAKED_SHARE, measure_leakage
from llm_pipeline.text.split.sides import SplitSummary
from llm_pipeline.text.split.split_file import read_split
from llm_pipeline.text.store import parquet_parts
from llm_pipeline_tests.corpora import SHAPES, SHARED_SHAPES, paragraph

_SEARCH_EXAMPLES = int(os.environ.get("LLM_PIPELINE_SEARCH_EXAMPLES", "0"))


def search(examples: int) -> settings:
    """`examples` derandomised examples, or the environment's number of random ones."""
    return settings(
        max_examples=_SEARCH_EXAMPLES or examples,
        derandomize=not _SEARCH_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# A line C4 line cleaning removes (no end punctuation), in its own paragraph.
SUBSCRIBE = "\n\nClick here to subscribe"


def generate(shape: str, seed: int, scale: float) -> list[str]:
    """A corpus of `shape` at `scale` times its default size (at least a few documents)."""
    generator = SHAPES[shape]
    default = generator.__defaults__[0]
    return generator(random.Random(seed), max(3, round(default * scale)))


def clean(folder: Path, texts: list[str], **settings) -> tuple[dict, SplitSummary, list]:
    """Clean `texts` with the default profile and `settings`; ({split_key: side}, summary,
    output rows as (text, side))."""
    folder.mkdir(parents=True)
    config = CleaningConfig.from_profile("docs", **settings)
    clean_documents([(texts, [f"f{i}" for i in range(len(texts))])], folder, config)
    sides, rows = {}, []
    for part in parquet_parts(folder):
        table = pq.read_table(part, columns=["split_key", "text", "split"]).to_pydict()
        sides.update(zip(table["split_key"], table["split"]))
        rows += list(zip(table["text"], table["split"]))
    return sides, read_split(folder), rows


def moved(before: dict, after: dict) -> tuple[int, int]:
    """(documents on the other side, documents in both)."""
    common = before.keys() & after.keys()
    return sum(before[k] != after[k] for k in common), len(common)


@search(40)
@given(
    shape=st.sampled_from(sorted(SHAPES)),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.2, 1.5),
    val_fraction=st.sampled_from([0.02, 0.05, 0.1, 0.2]),
    passage_dedup=st.booleans(),
)
def test_every_shape_splits_within_bounds_and_without_leaks(
    tmp_path_factory, shape: str, seed: int, scale: float, val_fraction: float, passage_dedup: bool
) -> None:
    """The bounds hold with passage dedup on or off; the leakage bound with the defaults."""
    folder = tmp_path_factory.mktemp("split") / "out"
    texts = generate(shape, seed, scale)
    _, split, rows = clean(folder, texts, val_fraction=val_fraction, passage_dedup=passage_dedup)
    if len(rows) < 2:
        assert split.val_docs == 0 and split.problem() is not None
        return
    sizes = [len(text.encode()) for text, _ in rows]
    target = val_fraction * sum(sizes)
    # No unit outgrows val_fraction of the bytes, unless it is one document.
    assert split.largest_unit_share <= val_fraction or max(sizes) > target
    assert split.val_docs > 0 and split.train_docs > 0
    # Units small enough to go to validation whole hold half the target: the bounds hold.
    if sum(size for size in sizes if size <= target) >= target / 2:
        assert split.problem() is None, split.to_dict()
        assert val_fraction / 2 <= split.val_share <= 2 * val_fraction
    else:
        assert "too few units" in (split.problem() or "too few units")
    if passage_dedup:  # the default
        leakage = measure_leakage(parquet_parts(folder))
        assert leakage.share <= MAX_LEAKED_SHARE, (shape, leakage)


@search(25)
@given(
    shape=st.sampled_from(sorted(set(SHAPES) - {"huge_docs"})),
    seed=st.integers(0, 2**16),
    scale=st.floats(1.0, 2.0),
)
def test_an_edit_and_growth_move_at_most_5_percent(
    tmp_path_factory, shape: str, seed: int, scale: float
) -> None:
    texts = [t + SUBSCRIBE for t in generate(shape, seed, scale)]
    rng = random.Random(seed)
    extra = [t + SUBSCRIBE for t in generate(shape, seed + 1, scale)][: max(len(texts) // 10, 1)]
    grown = list(texts)
    for text in extra:  # new files sort anywhere among the old ones
        grown.insert(rng.randint(0, len(grown)), text)
    root = tmp_path_factory.mktemp("stable")
    base, _, _ = clean(root / "base", texts)
    edited, _, _ = clean(root / "edited", texts, c4_lines=True)  # takes lines out of texts
    bigger, _, _ = clean(root / "grown", grown)
    for after in (edited, bigger):
        changed, common = moved(base, after)
        assert changed <= 0.05 * common, (shape, changed, common)


def _long_passages(text: str) -> set[int]:
    return set(passage_keys(text, 8))


@search(20)
@given(shape=st.sampled_from(sorted(SHARED_SHAPES)), seed=st.integers(0, 2**16))
def test_passage_dedup_keeps_every_long_passage_exactly_once(
    tmp_path_factory, shape: str, seed: int
) -> None:
    texts = generate(shape, seed, 0.5)
    folder = tmp_path_factory.mktemp("passages") / "out"
    folder.mkdir()
    config = CleaningConfig.from_profile(
        "docs", exact_dedup=False, near_dedup=False, gopher_repetition=False
    )
    stats = clean_documents([(texts, ["f"] * len(texts))], folder, config)
    before = set().union(*(_long_passages(normalize_text(t)) for t in texts))
    owners: dict[int, int] = {}
    for part in parquet_parts(folder):
        for row, text in enumerate(pq.read_table(part, columns=["text"]).column(0).to_pylist()):
            for key in _long_passages(text):
                assert key not in owners, "a passage kept twice"
                owners[key] = row
    assert set(owners) == before  # none lost: a document keeping one is never dropped
    # The funnel adds up: every byte in is out, removed or edited away.
    removed = sum(stats.dropped_bytes.values()) + sum(stats.edited_bytes.values())
    assert stats.bytes_in - stats.bytes_out == removed
    assert stats.passages_removed > 0


def _brute_force(texts: list[str], sides: list[str]) -> tuple[int, int, int]:
    """(leaked bytes, validation 13-grams, those seen in training) by plain Python sets."""

    def grams(text: str, n: int) -> list[tuple]:
        words = normalized_words(text)
        return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]

    train8 = [set(grams(t, 8)) for t, s in zip(texts, sides) if s == "train"]
    train13 = set().union(*(grams(t, 13) for t, s in zip(texts, sides) if s == "train"))
    leaked = val13 = seen13 = 0
    for text, side in zip(texts, sides):
        if side != "val":
            continue
        own = set(grams(text, 8))
        best = max((len(own & t) / len(own) for t in train8), default=0.0) if own else 0.0
        if best >= 0.5:
            leaked += len(text.encode())
        occurrences = grams(text, 13)
        val13 += len(occurrences)
        seen13 += sum(g in train13 for g in occurrences)
    return leaked, val13, seen13


@search(100)
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(2, 40),
    pool=st.integers(1, 12),
    val_every=st.integers(2, 6),
)
def test_leakage_counts_every_gram_as_brute_force_does(
    tmp_path_factory, seed: int, n: int, pool: int, val_every: int
) -> None:
    """Documents of 1-4 passages from a small pool (popular passages in most documents) and
    some of their own; the measure equals a count over plain sets."""
    rng = random.Random(seed)
    shared = [paragraph(rng, 1, 3) for _ in range(pool)]
    texts = [
        "\n\n".join(rng.choice(shared) if rng.random() < 0.6 else paragraph(rng, 1, 2)
                    for _ in range(rng.randint(1, 4)))
        for _ in range(n)
    ]  # fmt: skip
    sides = ["val" if i % val_every == 0 else "train" for i in range(n)]
    path = tmp_path_factory.mktemp("leak") / "part-00000.parquet"
    pq.write_table(pa.table({"text": texts, "split": sides}), path)
    leakage = measure_leakage([path])
    leaked, val13, seen13 = _brute_force(texts, sides)
    assert (leakage.leaked_bytes, leakage.val_13grams, leakage.seen_13grams) == (
        leaked,
        val13,
        seen13,
    )
