"""Each reader, and each kind of bad input: skipped with the file, line and reason."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from llm_pipeline.text.read.chunks import split_long_text
from llm_pipeline.text.read.readers import ReadStats, fingerprint_files, iter_documents


def read(root: Path, **kwargs) -> tuple[list, ReadStats]:
    stats = ReadStats()
    docs = list(iter_documents(root, stats=stats, **kwargs))
    return docs, stats


def test_txt_and_md_are_one_document_per_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Alpha text.\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("# Beta\n\nbody")
    docs, stats = read(tmp_path)
    assert [(d.source, d.text) for d in docs] == [
        ("a.txt", "Alpha text.\n"),
        ("sub/b.md", "# Beta\n\nbody"),
    ]
    assert stats.files_read == 2 and stats.documents == 2


def test_utf8_bom_is_removed(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes("\ufeffhello".encode())
    docs, _ = read(tmp_path)
    assert docs[0].text == "hello"


def test_jsonl_reads_configured_field_and_skips_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"body": "first"}),
        "{not json",
        json.dumps({"other": 1}),
        json.dumps({"body": 5}),
        json.dumps(["list"]),
        "",
        json.dumps({"body": "second"}),
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    docs, stats = read(tmp_path, text_field="body")
    assert [d.text for d in docs] == ["first", "second"]
    assert stats.lines_skipped == 4
    assert any("d.jsonl:2" in p and "malformed JSON" in p for p in stats.problems)
    assert any("d.jsonl:3" in p and "no 'body' field" in p for p in stats.problems)
    assert any("d.jsonl:4" in p and "int, not a string" in p for p in stats.problems)
    assert any("d.jsonl:5" in p and "not a JSON object" in p for p in stats.problems)


def test_jsonl_with_lone_surrogate_is_skipped_not_crashing(tmp_path: Path) -> None:
    (tmp_path / "s.jsonl").write_text('{"text": "bad \\ud800 here"}\n{"text": "ok"}\n')
    docs, stats = read(tmp_path)
    assert [d.text for d in docs] == ["ok"]
    assert "surrogate" in stats.problems[0]


def test_compressed_files_gz_and_zst(tmp_path: Path) -> None:
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(b"gzipped text"))
    record = json.dumps({"text": "zstd line"}).encode() + b"\n"
    (tmp_path / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(record * 3))
    docs, stats = read(tmp_path)
    assert [d.text for d in docs] == ["gzipped text"] + ["zstd line"] * 3
    assert stats.files_skipped == 0


def test_parquet_column_and_nulls(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": ["one", None, "two"]}), tmp_path / "p.parquet")
    pq.write_table(pa.table({"content": ["x"]}), tmp_path / "q.parquet")
    docs, stats = read(tmp_path)
    assert [d.text for d in docs] == ["one", "two"]
    assert stats.lines_skipped == 1
    assert any("q.parquet" in p and "no 'text' column" in p for p in stats.problems)


def test_bad_files_are_skipped_with_reason_and_good_ones_kept(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("keep me")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02ELF" * 10)
    (tmp_path / "empty.md").write_bytes(b"")
    (tmp_path / "blank.txt").write_text("  \n\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "broken.txt.gz").write_bytes(b"not gzip at all")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 nope")
    (tmp_path / ".hidden.txt").write_text("ignored")
    docs, stats = read(tmp_path, encoding_errors="skip")  # the strict policy
    assert [d.text for d in docs] == ["keep me"]
    assert stats.files_skipped == 7
    reasons = "\n".join(stats.problems)
    assert "latin1.txt: skipped file: not valid UTF-8 (byte 3" in reasons
    assert "binary.txt: skipped file: binary file" in reasons
    assert "empty.md: skipped file: empty file" in reasons
    assert "blank.txt: skipped file: empty file" in reasons
    assert "image.png: skipped file: unknown file type" in reasons
    assert "broken.txt.gz: skipped file:" in reasons and "corrupt gz" in reasons
    assert "broken.parquet: skipped file: not a readable Parquet file" in reasons
    assert ".hidden" not in reasons


def test_long_documents_are_chunked_at_paragraphs(tmp_path: Path) -> None:
    paragraphs = [f"Paragraph {i} " + "word " * 30 for i in range(40)]
    (tmp_path / "book.txt").write_text("\n\n".join(paragraphs))
    docs, stats = read(tmp_path, max_doc_chars=1000)
    assert len(docs) > 5 and stats.chunked_documents == 1
    assert all(len(d.text) <= 1000 for d in docs)
    assert all(d.text.startswith("Paragraph") for d in docs)
    assert "".join(d.text for d in docs) == "\n\n".join(paragraphs)


def test_split_long_text_hard_cuts_without_separators() -> None:
    chunks = split_long_text("x" * 2500, 1000)
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    assert split_long_text("short", 1000) == ["short"]


def test_fingerprint_changes_exactly_when_content_changes(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one")
    first = fingerprint_files(tmp_path)
    (tmp_path / "a.txt").write_text("one")  # rewritten, same bytes
    assert fingerprint_files(tmp_path) == first
    (tmp_path / "a.txt").write_text("two")
    assert fingerprint_files(tmp_path) != first
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / "b.txt").write_text("new file")
    assert fingerprint_files(tmp_path) != first


def test_big_text_file_streams_in_chunks_and_bad_tail_drops_whole_file(tmp_path: Path) -> None:
    paragraph = "A paragraph of a long book, with words and ünïcode. " * 20
    book = "\n\n".join(f"{i} {paragraph}" for i in range(3000))  # ~3 MB, > one read block
    (tmp_path / "book.txt").write_text(book)
    docs, stats = read(tmp_path, max_doc_chars=5000)
    assert [d.text for d in docs] == split_long_text(book, 5000)
    assert "".join(d.text for d in docs) == book
    assert stats.chunked_documents == 1

    (tmp_path / "book.txt").write_bytes(book.encode() + b"\xff trailing garbage")
    docs, stats = read(tmp_path, max_doc_chars=5000, encoding_errors="skip")
    assert docs == []
    assert (
        f"book.txt: skipped file: not valid UTF-8 (byte {len(book.encode())}" in stats.problems[0]
    )


def test_jsonl_lines_that_crash_json_parsers_are_skipped(tmp_path: Path) -> None:
    lines = [
        '{"text": "fine"}',
        '{"text": "x", "n": ' + "1" * 5000 + "}",
        "[" * 200_000,
        '{"text": "also fine"}',
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    docs, stats = read(tmp_path)
    assert [d.text for d in docs] == ["fine", "also fine"]
    assert stats.lines_skipped == 2
    assert all("malformed JSON" in p for p in stats.problems)


def test_parquet_with_invalid_utf8_is_skipped_with_its_name(tmp_path: Path) -> None:
    bad = pa.array([b"ok", b"\xff\xfe broken"], pa.binary()).view(pa.string())
    pq.write_table(pa.table({"text": bad}), tmp_path / "bad.parquet")
    pq.write_table(pa.table({"text": ["good row"]}), tmp_path / "good.parquet")
    docs, stats = read(tmp_path, encoding_errors="skip")  # the strict policy
    assert "good row" in [d.text for d in docs]
    assert any(p.startswith("bad.parquet: skipped file:") for p in stats.problems)


def test_parquet_row_with_a_stray_byte_is_kept_with_replacement(tmp_path: Path) -> None:
    bad = pa.array([b"ok", b"\xff\xfe broken", b"fine"], pa.binary()).view(pa.string())
    pq.write_table(pa.table({"text": bad}), tmp_path / "bad.parquet")
    docs, stats = read(tmp_path)
    assert [d.text for d in docs] == ["ok", "\ufffd\ufffd broken", "fine"]
    assert stats.files_skipped == 0 and stats.lines_skipped == 0
    assert stats.replaced_bytes == 2 and stats.lines_with_replacements == 1
    assert any("bad.parquet:2: 2 invalid UTF-8 byte(s)" in p for p in stats.problems)


def test_compressed_parquet_and_markdown(tmp_path: Path) -> None:
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": ["row one", "row two"]}), buffer)
    (tmp_path / "t.parquet.zst").write_bytes(
        zstandard.ZstdCompressor().compress(buffer.getvalue().to_pybytes())
    )
    (tmp_path / "n.md.gz").write_bytes(gzip.compress(b"# Notes\n\nbody"))
    docs, stats = read(tmp_path)
    assert sorted(d.text for d in docs) == ["# Notes\n\nbody", "row one", "row two"]
    assert stats.files_skipped == 0


def test_stray_bytes_in_utf8_are_replaced_counted_and_the_file_kept(tmp_path: Path) -> None:
    book = "Ünïcode prose, naïve café, 東京. " * 2000  # ~80 KB of valid UTF-8
    data = book.encode()
    cut = [1000, 30_001, 60_002]  # three stray bytes, inserted at character boundaries
    pieces, last = [], 0
    for i in cut:
        while (data[i] & 0xC0) == 0x80:  # move to the start of a character
            i += 1
        pieces += [data[last:i], b"\xff"]
        last = i
    first = len(pieces[0])
    (tmp_path / "book.txt").write_bytes(b"".join(pieces) + data[last:])
    docs, stats = read(tmp_path)
    text = "".join(d.text for d in docs)
    assert text.count("\ufffd") == 3
    assert text.replace("\ufffd", "") == book
    assert stats.files_read == 1 and stats.files_skipped == 0
    assert stats.replaced_bytes == 3 and stats.files_with_replacements == 1
    assert any(f"replaced by U+FFFD (first at byte {first})" in p for p in stats.problems)


def test_windows_1252_and_shift_jis_files_are_decoded_right(tmp_path: Path) -> None:
    french = "Le café « déjà vu » — “guillemets” et naïveté à la façade.\n" * 30
    japanese = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。\n" * 30
    (tmp_path / "french.txt").write_bytes(french.encode("cp1252"))
    (tmp_path / "japanese.txt").write_bytes(japanese.encode("shift_jis"))
    docs, stats = read(tmp_path)
    assert {d.source: d.text for d in docs} == {"french.txt": french, "japanese.txt": japanese}
    assert stats.files_skipped == 0 and sum(stats.decoded_as.values()) == 2
    assert any("french.txt: not UTF-8; decoded as cp1252" in p for p in stats.problems)


def test_binary_and_undetectable_files_are_still_skipped(tmp_path: Path) -> None:
    import random

    noise = random.Random(0).randbytes(4000).replace(b"\0", b"\1")
    (tmp_path / "noise.txt").write_bytes(noise)
    (tmp_path / "program.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8)
    docs, stats = read(tmp_path)
    assert docs == [] and stats.files_skipped == 2
    reasons = "\n".join(stats.problems)
    assert "program.txt: skipped file: binary file" in reasons
    assert "noise.txt: skipped file: not valid UTF-8" in reasons
    assert "no other encoding detected with confidence" in reasons


def test_jsonl_line_with_a_stray_byte_is_kept_with_replacement(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_bytes(b'{"text": "caf\xe9 ok"}\n{"text": "fine"}\n')
    docs, stats = read(tmp_path)
    assert [d.text for d in docs] == ["caf\ufffd ok", "fine"]
    assert stats.replaced_bytes == 1 and stats.lines_with_replacements == 1
    docs, stats = read(tmp_path, encoding_errors="skip")
    assert [d.text for d in docs] == ["fine"] and stats.lines_skipped == 1
