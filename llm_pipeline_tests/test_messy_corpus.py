"""The messy-corpus suite: every kind of bad input users really have, and what happens to it.

Each input has one asserted outcome: read (decoded, with the exact text), skipped with a named
reason, or — for a whole corpus with nothing usable — refused with a clear error. Good files in
the same folder are always still read, and nothing outside the corpus folder is ever read.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey

from llm_pipeline.text.read import readers
from llm_pipeline.text.read.readers import ReadStats, fingerprint_files, iter_documents

GOOD = "A good document that must still be read, whatever its neighbours look like."
SECRET = "outside secret: this text lives outside the corpus folder"
NESTING = 600  # deeper than Python's recursion limit allows a recursive walk to go


def _write_messy(root: Path, outside: Path) -> dict[str, tuple[str, object]]:
    """Create the messy corpus; return {source: ("read", [texts]) | ("skipped", reason)}."""
    root.mkdir(parents=True)
    outside.mkdir(parents=True)
    expected: dict[str, tuple[str, object]] = {}

    (root / "good.txt").write_text(GOOD)
    expected["good.txt"] = ("read", [GOOD])

    # Not UTF-8 half-way, and nothing else non-ASCII: a Windows-1252 file, decoded as one (the
    # strict policy, encoding_errors=skip, skips it: test_readers.py).
    head = b"Plain text that starts well " * 100
    (root / "invalid-mid.txt").write_bytes(head + b"\xff\xfe\xfd" + b" and goes on")
    expected["invalid-mid.txt"] = ("read", [(head + b"\xff\xfe\xfd and goes on").decode("cp1252")])

    text16 = "Unicode text from a Windows editor: naïve café, 東京.\r\nSecond line."
    (root / "utf16-le.txt").write_bytes(text16.encode("utf-16"))  # BOM + little-endian
    (root / "utf16-be.md").write_bytes(b"\xfe\xff" + text16.encode("utf-16-be"))
    expected["utf16-le.txt"] = ("read", [text16])
    expected["utf16-be.md"] = ("read", [text16])
    records16 = [json.dumps({"text": "utf-16 record one"}), json.dumps({"text": "record two"})]
    (root / "utf16.jsonl").write_bytes("\n".join(records16).encode("utf-16"))
    expected["utf16.jsonl"] = ("read", ["utf-16 record one", "record two"])

    (root / "program.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8)
    expected["program.txt"] = ("skipped", "binary file (contains NUL bytes)")
    # NULs only after the sniffed head: caught while decoding, still named binary.
    (root / "late-binary.txt").write_bytes(b"text " * 4000 + b"\x00\x01\x02")
    expected["late-binary.txt"] = ("skipped", "binary file (contains NUL characters)")

    (root / "empty.txt").write_bytes(b"")
    expected["empty.txt"] = ("skipped", "empty file")
    (root / "whitespace.md").write_text(" \n\t\n")
    expected["whitespace.md"] = ("skipped", "empty file")

    lines = [
        json.dumps({"text": "first record"}),
        '{"text": "cut off in the mid',
        json.dumps({"text": 42}),
        json.dumps({"text": None}),
        json.dumps({"text": ["a", "list"]}),
        json.dumps({"body": "wrong field"}),
        json.dumps("a bare string"),
        "\xff broken bytes",
        json.dumps({"text": "last record"}),
    ]
    (root / "records.jsonl").write_bytes(
        "\n".join(lines).encode("utf-8", "surrogateescape").replace(b"\xc3\xbf", b"\xff") + b"\n"
    )
    expected["records.jsonl"] = ("read", ["first record", "last record"])

    pq.write_table(pa.table({"body": ["no text column here"]}), root / "no-text.parquet")
    expected["no-text.parquet"] = ("skipped", "no 'text' column (columns: ['body'])")

    whole = gzip.compress(("A compressed document. " * 2000).encode())
    (root / "truncated.txt.gz").write_bytes(whole[: len(whole) // 2])
    expected["truncated.txt.gz"] = ("skipped", "unreadable: corrupt gz data (EOFError")
    jsonl_gz = gzip.compress(
        "".join(
            json.dumps({"text": f"record {i} " + "x" * 200}) + "\n" for i in range(400)
        ).encode()
    )
    (root / "truncated.jsonl.gz").write_bytes(jsonl_gz[: len(jsonl_gz) // 2])
    expected["truncated.jsonl.gz"] = ("skipped", "partly read: corrupt gz data (EOFError")

    (outside / "secret.txt").write_text(SECRET)
    (outside / "folder").mkdir()
    (outside / "folder" / "more.txt").write_text(SECRET)
    (root / "link-out.txt").symlink_to(outside / "secret.txt")
    expected["link-out.txt"] = ("skipped", "outside the corpus folder")
    (root / "linked-folder").symlink_to(outside / "folder")
    expected["linked-folder"] = ("skipped", "outside the corpus folder")
    (root / "dangling.txt").symlink_to(root / "gone.txt")
    expected["dangling.txt"] = ("skipped", "broken symbolic link")
    (root / "link-in.txt").symlink_to(root / "good.txt")  # inside the corpus: fine
    expected["link-in.txt"] = ("read", [GOOD])
    os.mkfifo(root / "pipe.txt")  # opening it would block forever
    expected["pipe.txt"] = ("skipped", "not a regular file")

    (root / "locked.txt").write_text("text nobody may read")
    (root / "locked.txt").chmod(0)
    expected["locked.txt"] = ("skipped", "cannot be read (Permission denied)")

    deep = root.joinpath(*["d"] * NESTING)
    deep.mkdir(parents=True)
    (deep / "bottom.md").write_text("# Found at the bottom")
    expected["d/" * NESTING + "bottom.md"] = ("read", ["# Found at the bottom"])
    return expected


@pytest.fixture
def messy(tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    root = data_root / "raw" / "messy"
    expected = _write_messy(root, tmp_path / "elsewhere")
    locked = root / "locked.txt"
    if os.access(locked, os.R_OK):
        # Running as root: chmod does not stop reads, so the kernel's answer is simulated at
        # the one place the reader opens files (a non-root CI run exercises the real one).
        real_open = readers.open_corpus_file

        def denying_open(file, *args, **kwargs):
            if Path(os.fsdecode(file)) == locked:
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(readers, "open_corpus_file", denying_open)
    yield root, expected
    locked.chmod(0o644)


def test_every_messy_input_has_its_asserted_outcome(messy) -> None:
    root, expected = messy
    stats = ReadStats()
    docs = list(iter_documents(root, stats=stats, max_doc_chars=20_000))
    by_source: dict[str, list[str]] = {}
    for doc in docs:
        by_source.setdefault(doc.source, []).append(doc.text)
    skipped = {p.split(": skipped file: ")[0]: p for p in stats.problems if ": skipped file: " in p}

    for source, (outcome, detail) in expected.items():
        if outcome == "read":
            assert by_source.get(source) == detail, source
            assert source not in skipped, skipped.get(source)
        elif source.endswith("truncated.jsonl.gz"):
            # Records before the cut are kept (each is whole); the file is reported.
            assert by_source[source] and all(t.startswith("record ") for t in by_source[source])
            assert detail in skipped[source]
        else:
            assert source not in by_source, source
            assert detail in skipped[source], (source, skipped.get(source))
    assert not any(SECRET in d.text for d in docs)

    reasons = "\n".join(stats.problems)
    assert "records.jsonl:2: skipped line: malformed JSON" in reasons
    assert "records.jsonl:3: skipped line: field 'text' is int, not a string" in reasons
    assert "records.jsonl:4: skipped line: field 'text' is NoneType, not a string" in reasons
    assert "records.jsonl:5: skipped line: field 'text' is list, not a string" in reasons
    assert "records.jsonl:6: skipped line: record has no 'text' field" in reasons
    assert "records.jsonl:7: skipped line: record is not a JSON object" in reasons
    assert "records.jsonl:8: skipped line:" in reasons
    assert stats.lines_skipped == 7
    n_skipped = sum(1 for outcome, _ in expected.values() if outcome == "skipped")
    assert stats.files_skipped == n_skipped
    assert stats.documents == len(docs)


def test_fingerprint_never_reads_outside_the_corpus(messy, tmp_path: Path) -> None:
    root, _ = messy
    first = fingerprint_files(root)
    (tmp_path / "elsewhere" / "secret.txt").write_text(SECRET + " changed")
    assert fingerprint_files(root) == first  # the linked file's bytes are not part of it
    (root / "good.txt").write_text(GOOD + " changed")
    assert fingerprint_files(root) != first


def test_messy_corpus_materializes_with_every_problem_named(messy, instance) -> None:
    """Through the real `raw_corpus` asset: the run succeeds on the good files and the UI
    metadata names every skipped file with its reason."""
    from llm_pipeline.definitions import defs
    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME

    root, expected = messy
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["messy"])
    result = defs.resolve_job_def("corpus_data_job").execute_in_process(
        instance=instance,
        partition_key="messy",
        asset_selection=[AssetKey("raw_corpus")],
        raise_on_error=False,
    )
    assert result.success
    meta = result.asset_materializations_for_node("raw_corpus")[0].metadata
    skipped = [s for s, (outcome, _) in expected.items() if outcome == "skipped"]
    assert meta["files_skipped"].value == len(skipped)
    problems = {
        line.split(": skipped file: ")[0].strip("- `"): line
        for line in meta["problems"].value.splitlines()
    }
    for source in skipped:
        assert expected[source][1] in problems[source], source
    texts = [
        text
        for part in sorted((root.parent.parent / "documents" / "messy").glob("part-*.parquet"))
        for text in pq.read_table(part).column("text").to_pylist()
    ]
    assert GOOD in texts and not any(SECRET in t for t in texts)


def test_corpus_with_only_bad_input_is_refused_naming_each_file(
    tmp_path: Path, data_root: Path, instance
) -> None:
    from llm_pipeline.definitions import defs
    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
    from llm_pipeline_tests.test_pipeline import failures

    folder = data_root / "raw" / "allbad"
    folder.mkdir(parents=True)
    (tmp_path / "secret.txt").write_text(SECRET)
    (folder / "link.txt").symlink_to(tmp_path / "secret.txt")
    (folder / "empty.txt").write_bytes(b"")
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["allbad"])
    result = defs.resolve_job_def("corpus_data_job").execute_in_process(
        instance=instance,
        partition_key="allbad",
        asset_selection=[AssetKey("raw_corpus")],
        raise_on_error=False,
    )
    assert not result.success
    (message,) = failures(result)
    assert "no usable documents in 2 file(s)" in message
    assert "link.txt: skipped file: symbolic link to" in message
    assert "empty.txt: skipped file: empty file" in message
    assert not (data_root / "documents" / "allbad").exists()


def test_200_mb_file_without_a_newline_streams_in_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No newline anywhere: as text it is cut into chunks; as JSONL the one 200 MB line is
    skipped by name. Either way the reader's peak memory stays a small fraction of the file."""
    size = 200 << 20
    block = (b"word " * ((1 << 20) // 5 + 1))[: 1 << 20]
    (tmp_path / "huge.txt").write_bytes(b"")
    with open(tmp_path / "huge.txt", "wb") as fh:
        for _ in range(size >> 20):
            fh.write(block)
    os.link(tmp_path / "huge.txt", tmp_path / "huge.jsonl")  # same bytes, no second copy
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 8 << 20)

    stats = ReadStats()
    chunks = total_chars = longest = 0
    tracemalloc.start()
    try:
        for doc in iter_documents(tmp_path, stats=stats, max_doc_chars=20_000):
            chunks += 1
            total_chars += len(doc.text)
            longest = max(longest, len(doc.text))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total_chars == size and longest <= 20_000
    assert chunks >= size // 20_000
    assert stats.files_read == 2 and stats.chunked_documents == 1
    assert stats.problems == [f"huge.jsonl:1: skipped line: line longer than {8 << 20} bytes"]
    assert peak < 48 << 20, f"peak {peak / 2**20:.0f} MiB while reading a 200 MiB file"


def test_unlistable_corpus_folder_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    from llm_pipeline.errors import PipelineInputError

    with pytest.raises(PipelineInputError, match="corpus folder cannot be listed"):
        readers.corpus_files(tmp_path / "missing")
