#!/usr/bin/env python
"""Benchmark of the split on text that shares passages (issue 21): its figures, and what passage
dedup and the all-gram leakage measure cost next to the cleaning they add to.

Part 1, figures (`--docs N`, default the generators' own sizes): corpora from
`llm_pipeline_tests/corpora.py` are cleaned with the default profile (`docs`), with passage
dedup on (the default) and off, and for each the table prints

- `val`: validation's share of the bytes (bounds: [val_fraction / 2, 2 × val_fraction]);
- `leaked`: validation bytes in documents with ≥ 50% of their word 8-grams inside one training
  document, every gram counted (the blocking check's figure, bound 1%);
- `13-gram`: validation word 13-grams found anywhere in training text (GPT-3's measure);
- `edit`: surviving documents that changed side when the cleaning turned C4 line removal on
  (which takes a line out of every document and drops some);
- `grown`: documents that changed side when 10% more documents were added among the others;
- `units`, `cut`: clusters, and links cut so that no cluster outgrows val_fraction;
- `removed`: bytes passage dedup took out.

The built-in corpus (the standard library's docstrings; `--no-builtin` skips it, it takes about a
minute) and, where the machine has them, the Debian `copyright` files under /usr/share/doc (licence
texts repeated in hundreds of files: real boilerplate) are measured the same way.

Part 2, cost (`--mb M`, default 20; 0 skips): a clause-library corpus of about M MB and the
synthetic corpus of `synthetic_corpus.py` are cleaned with passage dedup off and on, and the
leakage measure is run on the result, interleaved `--repeat` times; it prints seconds per MB and
the ratios to the cleaning without passage dedup (medians), and the leakage measure's peak of
traced memory (numpy's arrays included: tracemalloc sees them).

    .venv/bin/python benchmarks/split.py [--docs 400] [--mb 20] [--repeat 3] [--no-builtin]
        [--no-figures]
"""

# The import path must be fixed before anything imports the standard library's `tokenize`:
# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# The sibling benchmark tokenize.py would shadow the standard library's `tokenize`.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse
import random
import shutil
import statistics
import tempfile
import time
import tracemalloc

import pyarrow.parquet as pq
from synthetic_corpus import WORK_DIR, ensure_documents

from llm_pipeline.text.clean import CleaningConfig, clean_documents, iter_document_batches
from llm_pipeline.text.funnel import PASSAGE_DUPLICATE
from llm_pipeline.text.split.leakage import measure_leakage
from llm_pipeline.text.split.split_file import read_split
from llm_pipeline.text.store import parquet_parts
from llm_pipeline_tests.corpora import SHAPES, clause_corpus

FIGURE_SHAPES = ("pool", "clauses", "quote_chains", "star", "distinct", "near_copies")
SUBSCRIBE = "\n\nClick here to subscribe"  # a line C4 line cleaning removes


def _clean(batches, folder: Path, **settings):
    folder.mkdir(parents=True)
    config = CleaningConfig.from_profile("docs", **settings)
    stats = clean_documents(batches, folder, config)
    sides = {}
    for part in parquet_parts(folder):
        table = pq.read_table(part, columns=["split_key", "split"]).to_pydict()
        sides.update(zip(table["split_key"], table["split"]))
    return stats, sides


def _moved(before: dict, after: dict) -> float:
    common = before.keys() & after.keys()
    return sum(before[k] != after[k] for k in common) / max(len(common), 1)


def figures(name: str, texts: list[str], grown: list[str], work: Path, dedup: bool) -> str:
    def batches(docs):
        return [(docs, [f"f{i}" for i in range(len(docs))])]

    out = work / f"{name}-{dedup}"
    stats, sides = _clean(batches(texts), out / "base", passage_dedup=dedup)
    _, edited = _clean(batches(texts), out / "edited", passage_dedup=dedup, c4_lines=True)
    _, bigger = _clean(batches(grown), out / "grown", passage_dedup=dedup)
    split = read_split(out / "base")
    leakage = measure_leakage(parquet_parts(out / "base"))
    removed = stats.edited_bytes.get(PASSAGE_DUPLICATE, 0)
    removed += stats.dropped_bytes.get(PASSAGE_DUPLICATE, 0)
    shutil.rmtree(out)
    return (
        f"| {name} | {'on' if dedup else 'off'} | {len(texts)} | {split.val_share:.1%} | "
        f"{leakage.share:.2%} | {leakage.overlap:.1%} | {_moved(sides, edited):.1%} | "
        f"{_moved(sides, bigger):.1%} | {split.units} | {split.links_cut} | "
        f"{removed / max(stats.bytes_in, 1):.1%} |"
    )


def part_figures(docs: int | None, builtin: bool, work: Path) -> None:
    print("| corpus | passage dedup | docs | val | leaked | 13-gram | edit | grown | units "
          "| cut | removed |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in FIGURE_SHAPES:
        generator = SHAPES[name]
        size = docs or generator.__defaults__[0]
        texts = [t + SUBSCRIBE for t in generator(random.Random(1), size)]
        rng = random.Random(2)
        grown = list(texts)
        for text in [t + SUBSCRIBE for t in generator(random.Random(3), size // 10)]:
            grown.insert(rng.randint(0, len(grown)), text)
        for dedup in (True, False):
            print(figures(name, texts, grown, work, dedup), flush=True)
    real: dict[str, list[str]] = {}
    if builtin:
        from llm_pipeline.text.read.builtin import iter_stdlib_docstrings

        real["built-in"] = [r["text"] for r in iter_stdlib_docstrings()]
    copyrights = sorted(Path("/usr/share/doc").glob("*/copyright"))
    if copyrights:  # real boilerplate: licence texts repeated in hundreds of files
        real["debian copyright"] = [
            text for path in copyrights if (text := _read_text(path)) is not None
        ]
    for name, texts in real.items():
        rng = random.Random(4)
        held = set(rng.sample(range(len(texts)), len(texts) // 11))
        base = [t for i, t in enumerate(texts) if i not in held]  # grown: all of them
        for dedup in (True, False):
            print(figures(name, base, texts, work, dedup), flush=True)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def part_cost(mb: float, repeat: int, work: Path) -> None:
    corpora = {"clauses": _clause_parts(mb), "synthetic": ensure_documents(mb, 0)[0]}
    print(f"\ncost per MB ({repeat} interleaved runs, medians; seconds per MB of input):")
    print("| corpus | MB | clean, passage dedup off | + passage dedup | leakage measure | "
          "its peak memory |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, folder in corpora.items():
        parts = parquet_parts(folder)
        size = sum(pc_bytes(p) for p in parts) / 1e6
        times: dict[str, list[float]] = {"off": [], "on": [], "leak": []}
        peak = 0
        for r in range(repeat):
            for dedup in (False, True):
                out = work / f"cost-{name}-{dedup}-{r}"
                started = time.perf_counter()
                _clean(iter_document_batches(parts), out, passage_dedup=dedup)
                times["on" if dedup else "off"].append(time.perf_counter() - started)
                if dedup:
                    tracemalloc.start()
                    started = time.perf_counter()
                    measure_leakage(parquet_parts(out))
                    times["leak"].append(time.perf_counter() - started)
                    peak = max(peak, tracemalloc.get_traced_memory()[1])
                    tracemalloc.stop()
                shutil.rmtree(out)
        off, on, leak = (statistics.median(times[k]) for k in ("off", "on", "leak"))
        print(
            f"| {name} | {size:.1f} | {off / size:.3f} s | {(on - off) / size:+.3f} s "
            f"({on / off - 1:+.0%}) | {leak / size:.3f} s ({leak / off:.0%} of cleaning) | "
            f"{peak / 2**20:.0f} MiB |",
            flush=True,
        )


def pc_bytes(part: Path) -> int:
    import pyarrow.compute as pc

    column = pq.read_table(part, columns=["text"]).column(0)
    return int(pc.sum(pc.binary_length(column)).as_py() or 0)


def _clause_parts(mb: float) -> Path:
    """A clause-library corpus of about `mb` MB as document parts (cached)."""
    from llm_pipeline.text.read.readers import Document
    from llm_pipeline.text.store import write_documents

    folder = WORK_DIR / f"clauses-{mb:g}mb-v2"
    if (folder / "done").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    n = max(int(mb * 1e6 / 1500), 50)  # about 1.5 kB a document
    texts = clause_corpus(random.Random(0), n, clauses=max(n // 3, 50))
    write_documents((Document(f"c{i}", t) for i, t in enumerate(texts)), folder)
    (folder / "done").write_text("")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=0, help="documents per corpus (0: defaults)")
    parser.add_argument("--mb", type=float, default=20.0, help="cost corpus size (0: skip)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-builtin", dest="builtin", action="store_false")
    parser.add_argument("--no-figures", dest="figures", action="store_false", help="cost only")
    args = parser.parse_args()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="split-", dir=WORK_DIR))
    try:
        if args.figures:
            part_figures(args.docs or None, args.builtin, work)
        if args.mb > 0:
            part_cost(args.mb, args.repeat, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
