"""BPE training, shard writing/reading and the deterministic train/validation split."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_pipeline.text.clean import document_id
from llm_pipeline.text.split.sides import TRAIN, VAL, split_key
from llm_pipeline.text.store import CLEANED_SCHEMA
from llm_pipeline.tokens.bpe import (
    END_OF_TEXT,
    end_of_text_id,
    load_tokenizer,
    save_tokenizer,
    train_bpe,
)
from llm_pipeline.tokens.shards import (
    encode_ids,
    iter_split_batches,
    open_split,
    read_meta,
    shard_dtype,
    write_shards,
)
from llm_pipeline_tests.conftest import make_document


@pytest.fixture
def texts() -> list[str]:
    rng = random.Random(11)
    docs = [make_document(rng, rng.randint(5, 120)) for _ in range(300)]
    docs += ["def f(x):\n    return x  # ünïcode ✓ 😀", "tabs\tand  double  spaces\n\nend"]
    return docs


@pytest.fixture
def cleaned_file(tmp_path: Path, texts: list[str]) -> Path:
    path = tmp_path / "part-00000.parquet"
    table = pa.table(
        {
            "doc_id": [document_id(t) for t in texts],
            "text": texts,
            "n_chars": [len(t) for t in texts],
            "source": ["gen"] * len(texts),
            "split_key": [split_key(t) for t in texts],
            "split": [VAL if i % 10 == 3 else TRAIN for i in range(len(texts))],
        },
        schema=CLEANED_SCHEMA,
    )
    pq.write_table(table, path)
    return path


def test_bpe_is_lossless_and_has_end_of_text(tmp_path: Path, texts: list[str]) -> None:
    tokenizer = train_bpe([texts[:150], texts[150:]], vocab_size=400)
    assert tokenizer.get_vocab_size() <= 400
    assert end_of_text_id(tokenizer) == 0
    for text in [*texts, "never seen: Ωmega ∑ 中文 \x00"]:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        assert tokenizer.decode(ids, skip_special_tokens=False) == text
    path = tmp_path / "tok" / "tokenizer.json"
    digest = save_tokenizer(tokenizer, path)
    assert len(digest) == 64
    reloaded = load_tokenizer(path)
    assert reloaded.encode(texts[0]).ids == tokenizer.encode(texts[0]).ids
    assert reloaded.token_to_id(END_OF_TEXT) == 0
    merged = len(tokenizer.encode(texts[0]).ids)
    assert merged < len(texts[0].encode()) / 2  # merges were learned


def test_shard_dtype() -> None:
    assert shard_dtype(4096) == np.uint16
    assert shard_dtype(65536) == np.uint16
    assert shard_dtype(65537) == np.uint32


def test_literal_end_of_text_in_a_document_is_ordinary_text(tmp_path: Path, texts) -> None:
    tokenizer = train_bpe([texts], vocab_size=400)
    save_tokenizer(tokenizer, tmp_path / "tokenizer.json")
    for bpe in (tokenizer, load_tokenizer(tmp_path / "tokenizer.json")):
        document = "a user doc that says <|endoftext|> in the middle"
        flat, lengths = encode_ids(bpe, [document, "second"], 0, np.dtype(np.uint16))
        assert list(np.flatnonzero(flat == 0)) == [lengths[0] - 1, lengths.sum() - 1]
        assert bpe.decode(flat[: lengths[0] - 1].tolist()) == document


def test_failed_rewrite_keeps_the_previous_complete_shards(
    tmp_path: Path, texts: list[str], cleaned_file: Path
) -> None:
    tokenizer = train_bpe([texts], vocab_size=500)
    out = tmp_path / "shards"
    first = write_shards(tokenizer, iter_split_batches([cleaned_file]), out, 0)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def failing_batches():
        yield from iter_split_batches([cleaned_file], batch_size=16)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_shards(tokenizer, failing_batches(), out, 0)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert read_meta(out) == first


def test_write_shards_round_trip(tmp_path: Path, texts: list[str], cleaned_file: Path) -> None:
    tokenizer = train_bpe([texts], vocab_size=500)
    eot = end_of_text_id(tokenizer)
    out = tmp_path / "shards"
    meta = write_shards(tokenizer, iter_split_batches([cleaned_file], batch_size=64), out, eot)
    assert meta == read_meta(out)
    assert meta["dtype"] == "uint16"
    train, val = open_split(out, "train"), open_split(out, "val")
    assert len(train) == meta["splits"]["train"]["tokens"]
    assert len(val) == meta["splits"]["val"]["tokens"]

    expected = {"train": [], "val": []}
    for i, text in enumerate(texts):  # the fixture's split column
        expected["val" if i % 10 == 3 else "train"].append(text)
    for split, array in (("train", train), ("val", val)):
        docs = np.split(np.asarray(array), np.flatnonzero(np.asarray(array) == eot) + 1)[:-1]
        decoded = [tokenizer.decode(d[:-1].tolist()) for d in docs]
        assert decoded == expected[split]
        assert meta["splits"][split]["documents"] == len(expected[split])
        assert meta["splits"][split]["bytes"] == sum(len(t.encode()) for t in expected[split])
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_open_split_rejects_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown split"):
        open_split(tmp_path, "test")
