"""Progress of the data stages: the reporter's cadence and lines, a stage's run log, the CLI."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from llm_pipeline.cli.live import LiveDisplay, PlainDisplay, make_display
from llm_pipeline.progress import EVERY_PCT_ENV, EVERY_S_ENV, Progress, parse_line
from llm_pipeline_tests.test_pipeline import make_corpus, run


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_reports_percent_rate_and_eta_at_its_cadence() -> None:
    lines: list[str] = []
    clock = FakeClock()
    progress = Progress(1000, "stage", lines.append, every_s=5, every_pct=25, clock=clock)
    for _ in range(9):
        clock.now += 1
        progress.advance(10, 100)
    # 25% steps at 250, 500, 750 bytes; the time step (5 s) fires once more in between.
    assert 3 <= len(lines) <= 5
    parsed = [parse_line(line) for line in lines]
    assert all(p is not None and p.label == "stage" and p.percent is not None for p in parsed)
    assert "ETA" in lines[-1] and "MB/s" in lines[-1] and "docs" in lines[-1]
    progress.finish()
    done = parse_line(lines[-1])
    assert done is not None and done.done and "90 docs" in lines[-1]


def test_progress_without_a_total_reports_counts_only() -> None:
    lines: list[str] = []
    progress = Progress(0, "x", lines.append, every_s=0.0, every_pct=5)
    progress.advance(1, 10)
    assert lines == []  # no percent steps without a total, and the clock trigger is off
    assert "%" not in progress.line()


def test_cadence_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVERY_S_ENV, "0.5")
    monkeypatch.setenv(EVERY_PCT_ENV, "1")
    progress = Progress(100, "x", None)
    assert (progress.every_s, progress.every_pct) == (0.5, 1.0)
    monkeypatch.setenv(EVERY_S_ENV, "soon")
    with pytest.raises(ValueError, match=EVERY_S_ENV):
        Progress(100, "x", None)


def test_display_falls_back_to_plain_lines_without_a_tty() -> None:
    stream = io.StringIO()
    display = make_display(stream)
    assert isinstance(display, PlainDisplay)
    with display:
        display.message("cleaned_corpus", 20, "progress cleaned_corpus/filter: 50.0% 1 docs")
        display.message("cleaned_corpus", 30, "cleaning removed 90% of the bytes")
    lines = stream.getvalue().splitlines()
    assert lines == [
        "[cleaned_corpus] progress cleaned_corpus/filter: 50.0% 1 docs",
        "[cleaned_corpus] WARNING: cleaning removed 90% of the bytes",
    ]


def test_live_display_draws_a_bar_per_stage() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    display = make_display(stream)
    assert isinstance(display, LiveDisplay)
    with display:
        display.message("raw_corpus", 20, "progress raw_corpus: 40.0% 4 docs 0.0 MB of 0.0 MB")
        display.message("raw_corpus", 20, "progress raw_corpus: done, 9 docs 0.0 MB in 0 s")
        display.message("tokenizer", 20, "progress tokenizer: 10.0% 1 docs")
        display.message("tokenizer", 20, "tokenizer: 512 tokens")
    assert set(display.tasks) == {"raw_corpus", "tokenizer"}
    assert "tokenizer: 512 tokens" in stream.getvalue()


def _stage_messages(instance, run_id: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for entry in instance.all_logs(run_id):
        if not entry.is_dagster_event and entry.step_key:
            out.setdefault(entry.step_key, []).append(entry.user_message)
    return out


def test_data_stages_log_progress_with_percent_before_their_final_line(
    data_root: Path, instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(EVERY_S_ENV, "0")
    monkeypatch.setenv(EVERY_PCT_ENV, "10")
    make_corpus(data_root / "raw" / "tiny")
    result = run(
        instance,
        "tiny",
        {
            "raw_corpus": {"config": {"max_doc_chars": 2000}},
            "token_shards": {"config": {"batch_size": 16}},
        },
    )
    assert result.success
    messages = _stage_messages(instance, result.run_id)
    for step, labels in {
        "raw_corpus": ["raw_corpus"],
        "cleaned_corpus": ["cleaned_corpus/filter"],
        "tokenizer": ["tokenizer"],
        "token_shards": ["token_shards"],
    }.items():
        for label in labels:
            lines = [parse_line(m) for m in messages[step]]
            mine = [line for line in lines if line is not None and line.label == label]
            assert mine and mine[-1].done, (step, label, messages[step])
            with_percent = [line for line in mine[:-1] if line.percent is not None]
            assert len(with_percent) >= 2, (label, [line.text for line in mine])
            assert re.search(r"ETA \d", with_percent[-1].text)
    # Pass 2 reads the staged copy in output-sized batches: one for a corpus this small.
    dedup = [parse_line(m) for m in messages["cleaned_corpus"]]
    assert any(line is not None and line.label == "cleaned_corpus/dedup" and line.done
               for line in dedup)  # fmt: skip


def test_raw_corpus_progress_reaches_its_total_on_jsonl_and_parquet(tmp_path: Path) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from llm_pipeline.text.read.corpus_files import corpus_files
    from llm_pipeline.text.read.readers import ReadStats, iter_documents
    from llm_pipeline.text.stages import _file_sizes, counted_documents

    folder = tmp_path / "raw"
    folder.mkdir()
    texts = [f'Document {i} says "quoted" things\nover lines.' * 20 for i in range(200)]
    # JSONL: other fields, quotes and escapes make the file much larger than its text
    records = [{"meta": "m" * 2000, "text": t} for t in texts]
    (folder / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    # Parquet: compressed, so the file is far smaller than its text
    pq.write_table(pa.table({"text": texts}), folder / "b.parquet")
    files = corpus_files(folder)
    sizes = _file_sizes(folder, files)
    assert set(sizes) == {"a.jsonl", "b.parquet"}
    progress = Progress(sum(sizes.values()), "raw_corpus", None)
    stats = ReadStats()
    seen: dict[str, list[int]] = {"a.jsonl": [], "b.parquet": []}
    for document in counted_documents(iter_documents(folder, stats=stats, files=files), stats,
                                      progress, sizes):  # fmt: skip
        seen[document.source].append(progress.bytes)  # counted up to the document before
    jsonl, parquet = seen["a.jsonl"], seen["b.parquet"]
    assert len(jsonl) == len(parquet) == 200
    # JSONL moves with the reader's place in the file, not with the (smaller) text: half-way
    # through its documents, about half of its bytes are counted.
    assert 0.4 * sizes["a.jsonl"] < jsonl[100] < 0.6 * sizes["a.jsonl"], (jsonl[100], sizes)
    # Parquet's text is larger than the file: counted up to the file's size and no further.
    assert parquet[0] <= sizes["a.jsonl"] <= parquet[1]  # whole once the next file starts
    assert all(b <= sum(sizes.values()) for b in parquet)
    assert progress.bytes == progress.total_bytes  # 100% when the last document is read
