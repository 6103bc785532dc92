"""Passage-level dedup: a passage repeated across documents is kept once, in the first document
that has it (in output order), and taken out of every later one.

Whole-document dedup (exact and MinHash) leaves text that shares *parts*: contracts built from a
clause library, documentation assembled from shared snippets, support answers built from macros,
replies that quote the message before, pages with a common footer. C4 removes repeated
three-sentence spans, Dolma repeated paragraphs, datatrove repeated sentence spans. Here:

- **The passage is a paragraph**: lines between blank lines, where a change of e-mail quote depth
  (the leading `>` marks) also starts a new paragraph and a line of only `>` marks (or only
  `.`, the break inside an RFC 822-style field such as a Debian licence text) counts as blank.
  Removing a whole paragraph never leaves half a hard-wrapped sentence behind (removing single
  lines of wrapped text would), and the quote rule makes a quoted message's paragraphs the same
  passages as the message's own.
- **Compared as words**: lower case, ASCII punctuation deleted, whitespace collapsed — the
  reading of the MinHash and leakage measures — so `> Some text,` quoted in a reply is the same
  passage as `Some text,` in the message it quotes, whatever the line breaks.
- **Only passages of at least `min_words` words** are compared: short paragraphs ("Returns:",
  "Thanks,", a heading) are structure that many documents legitimately share.
- **A document that loses passages and is left with less than one passage's worth of words**
  (`min_words`, or the cleaning's `min_words` if more) is dropped, counted and sampled under
  `passage_duplicate` like the passages themselves: what is left is the stubs around what was
  taken out ("On Monday Bob wrote:", "Click here to subscribe"), the same in many documents.

Memory is bounded: pass 1 spills one (passage hash, document) record per distinct long passage
of each document to hash-partitioned files (`dedup.KeySpill`). `resolve_repeats` reads them one
partition at a time and writes each repeat, keyed by the document that loses it, to files
partitioned by document number (`Repeats`), which the rewrite reads in document order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_pipeline.text.dedup.exact import RECORD, KeySpill
from llm_pipeline.text.dedup.minhash import normalized_words

# Paragraphs of fewer words are never compared (see the module).
DEFAULT_PASSAGE_MIN_WORDS = 8
_QUOTE = re.compile(r"[ \t]*((?:>[ \t]*)*)")
_BLANK_RUNS = re.compile(r"\n{3,}")


def _quote_depth(line: str) -> tuple[int, bool]:
    """(number of leading `>` marks, whether the rest of the line is blank). A line of only
    `.` is blank too: the paragraph break of RFC 822-style fields (Debian's copyright files
    hold every licence text that way)."""
    if ">" not in line:  # most lines: no regex
        rest = line.strip()
        return 0, not rest or rest == "."
    match = _QUOTE.match(line)
    rest = line[match.end() if match else 0 :].strip()
    return (match.group(1) if match else "").count(">"), not rest or rest == "."


def paragraphs(text: str) -> list[tuple[int, int]]:
    """The paragraphs of `text` as (first line, end line) ranges of `text.split("\\n")`."""
    spans: list[tuple[int, int]] = []
    start, depth = -1, -1
    lines = text.split("\n")
    for i, line in enumerate(lines):
        level, blank = _quote_depth(line)
        if blank:
            if start >= 0:
                spans.append((start, i))
            start = -1
            continue
        if start >= 0 and level != depth:
            spans.append((start, i))
            start = -1
        if start < 0:
            start, depth = i, level
    if start >= 0:
        spans.append((start, len(lines)))
    return spans


def passage_key(words: list[bytes]) -> int:
    """The 64-bit key of a passage's normalised words."""
    return int.from_bytes(hashlib.blake2b(b" ".join(words), digest_size=8).digest(), "big")


def passage_keys(text: str, min_words: int) -> list[int]:
    """The keys of the distinct passages of `text` with at least `min_words` words."""
    lines = text.split("\n")
    keys = set()
    for first, end in paragraphs(text):
        words = normalized_words("\n".join(lines[first:end]))
        if len(words) >= min_words:
            keys.add(passage_key(words))
    return sorted(keys)


@dataclass
class Removed:
    """One document after its repeated passages were taken out."""

    text: str
    passages: list[str]  # the passages taken out, as they stood in the text
    words_left: int


def remove_passages(text: str, repeated: set[int], min_words: int) -> Removed:
    """`text` without the passages whose key is in `repeated`. Blank (or quote-only) lines left
    next to each other or at either end are dropped, and a blank line parts two paragraphs that
    only a removed quote stood between, so the result is still normalised text with the same
    paragraphs less the removed ones."""
    lines = text.split("\n")
    drop = np.zeros(len(lines), dtype=bool)
    taken: list[str] = []
    for first, end in paragraphs(text):
        words = normalized_words("\n".join(lines[first:end]))
        if len(words) >= min_words and passage_key(words) in repeated:
            drop[first:end] = True
            taken.append("\n".join(lines[first:end]))
    if not taken:
        return Removed(text, [], len(normalized_words(text)))
    kept: list[str] = []
    gap = False  # lines were taken out since the last line kept
    for line, dropped in zip(lines, drop.tolist()):
        if dropped:
            gap = True
            continue
        separator = _quote_depth(line)[1]
        if separator and (not kept or _quote_depth(kept[-1])[1]):
            continue  # a second separator in a row, or one at the start
        if gap and not separator and kept and not _quote_depth(kept[-1])[1]:
            kept.append("")  # what stood between two paragraphs still parts them
        kept.append(line)
        gap = False
    while kept and _quote_depth(kept[-1])[1]:
        kept.pop()
    out = _BLANK_RUNS.sub("\n\n", "\n".join(kept)).strip("\n")
    return Removed(out, taken, len(normalized_words(out)))


class Repeats:
    """The passages each document loses, in files partitioned by document number, so the
    rewrite reads them in document order one partition at a time."""

    def __init__(self, folder: Path, docs_per_part: int = 1 << 16) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.docs_per_part = docs_per_part
        self.records = 0
        self._part = -1
        self._loaded: dict[int, set[int]] = {}

    def _path(self, part: int) -> Path:
        return self.folder / f"repeats-{part:06d}.bin"

    def add(self, records: np.ndarray) -> None:
        parts = records["doc"].astype(np.int64) // self.docs_per_part
        order = np.argsort(parts, kind="stable")
        records, parts = records[order], parts[order]
        bounds = np.flatnonzero(np.diff(parts)) + 1
        for chunk in np.split(records, bounds):
            if len(chunk):
                with open(self._path(int(chunk["doc"][0]) // self.docs_per_part), "ab") as fh:
                    chunk.tofile(fh)
        self.records += len(records)

    def of(self, doc: int) -> set[int]:
        """The keys of the passages document `doc` loses (call with rising `doc`)."""
        part = doc // self.docs_per_part
        if part != self._part:
            self._part, self._loaded = part, {}
            path = self._path(part)
            if path.exists():
                records = np.fromfile(path, dtype=RECORD)
                for key, owner in zip(records["key"].tolist(), records["doc"].tolist()):
                    self._loaded.setdefault(owner, set()).add(key)
        return self._loaded.get(doc, set())


def resolve_repeats(spill: KeySpill, live: np.ndarray, repeats: Repeats) -> int:
    """Record every passage of a live document that an earlier live document also has; return
    how many. `spill` holds one (key, document) record per distinct passage of a document;
    `live` is one bool per document (False: already dropped as a duplicate, so it keeps
    nothing and takes nothing from others). The earlier document keeps the passage; should
    that one fail the filters once its own repeats are out (`survivors.py`), the passage goes
    with it."""
    found = 0
    for records in spill.iter_partitions():  # sorted by (key, doc): the first doc keeps
        records = records[live[records["doc"]]]
        if len(records) < 2:
            continue
        later = np.flatnonzero(records["key"][1:] == records["key"][:-1]) + 1
        if len(later):
            repeats.add(records[later])
            found += len(later)
    return found


def iter_batch_keys(texts: list[str], min_words: int) -> Iterator[tuple[int, int]]:
    """(index in the batch, passage key) for the distinct long passages of each text."""
    for index, text in enumerate(texts):
        for key in passage_keys(text, min_words):
            yield index, key
