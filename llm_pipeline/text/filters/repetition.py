"""Gopher's repetition filter (Rae et al. 2021, MassiveText table A1): repeated lines,
paragraphs and n-grams, measured as datatrove does, on whitespace-separated words.

Hot-path notes: line and paragraph rules are set sizes in C; n-gram repetition hashes word ids
with numpy and checks cheap bounds (word counts, the n=5 coverage) before exact n-gram counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from llm_pipeline.text.filters.basic import KEPT, DocumentFilter, split_words

_PARAGRAPHS = re.compile(r"\n{2,}")


def duplicate_stats(elements: list[str]) -> tuple[int, int]:
    """(elements that repeat an earlier one, characters in those repeats) — datatrove's
    `find_duplicates`, computed from the set of distinct elements instead of a Python loop."""
    unique = set(elements)
    return len(elements) - len(unique), sum(map(len, elements)) - sum(map(len, unique))


# Odd 64-bit multipliers for combining word ids into n-gram hashes (wrapping uint64 arithmetic).
_MIX = np.uint64(0x9E3779B97F4A7C15)


def _word_ids(words: list[str]) -> np.ndarray:
    """Python's string hash per word: salted per process, but only compared within one
    document, and `map(hash, ...)` runs in C."""
    return np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """One uint64 per n-gram: a polynomial over word ids (collisions ~2^-64, never seen)."""
    count = len(ids) - n + 1
    h = ids[:count].copy()
    for k in range(1, n):
        h = h * _MIX + ids[k : k + count] + np.uint64(1)
    return h


def _repeat_starts(h: np.ndarray) -> np.ndarray:
    """Boolean mask of n-gram positions whose n-gram already occurred earlier."""
    _, first = np.unique(h, return_index=True)
    mask = np.ones(len(h), dtype=bool)
    mask[first] = False
    return mask


def _covered_chars(starts: np.ndarray, n: int, lengths: np.ndarray) -> int:
    """Characters of the words covered by n-grams starting at `starts` (each word once)."""
    idx = np.flatnonzero(starts)
    if len(idx) == 0:
        return 0
    delta = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.add.at(delta, idx, 1)
    np.add.at(delta, idx + n, -1)
    covered = np.cumsum(delta[:-1]) > 0
    return int(lengths[covered].sum())


@dataclass(frozen=True)
class GopherRepetitionFilter(DocumentFilter):
    """Gopher's repetition heuristics (MassiveText, table A1), one reason per rule. Fractions
    of characters are over the whole document's characters, as in datatrove:

    - `max_dup_line_fraction` / `max_dup_paragraph_fraction`: lines / paragraphs (blank-line
      separated) that repeat an earlier one (0.3 / 0.3);
    - `max_dup_line_char_fraction` / `max_dup_paragraph_char_fraction`: the characters in them
      (0.2 / 0.2);
    - `top_ngram_char_fractions`: for n = 2, 3, 4, characters in the most frequent n-gram times
      its count (0.20, 0.18, 0.16);
    - `dup_ngram_char_fractions`: for n = 5..10, characters in words covered by repeated
      occurrences of n-grams (0.15 .. 0.10).

    Since a repeated n-gram implies repeated (n-1)-grams, coverage can only fall as n grows:
    when the n=5 coverage is under every threshold, n=6..10 are not computed.
    `ngram_min_words` skips the n-gram rules for shorter documents, where one repeated phrase
    ("the value ... the value") is a large fraction by chance (0: always, as in Gopher).
    """

    max_dup_line_fraction: float = 0.3
    max_dup_paragraph_fraction: float = 0.3
    max_dup_line_char_fraction: float = 0.2
    max_dup_paragraph_char_fraction: float = 0.2
    top_ngram_char_fractions: tuple[tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16))
    dup_ngram_char_fractions: tuple[tuple[int, float], ...] = (
        (5, 0.15),
        (6, 0.14),
        (7, 0.13),
        (8, 0.12),
        (9, 0.11),
        (10, 0.10),
    )
    ngram_min_words: int = 0
    name: str = "gopher_repetition"

    def filter(self, text: str) -> tuple[bool, str | None]:
        n_chars = len(text)
        if n_chars == 0:
            return KEPT
        if "\n" in text:
            if self.max_dup_paragraph_fraction or self.max_dup_paragraph_char_fraction:
                paragraphs = [p for p in _PARAGRAPHS.split(text) if p]
                dups, dup_chars = duplicate_stats(paragraphs)
                if self.max_dup_paragraph_fraction and (
                    dups / len(paragraphs) > self.max_dup_paragraph_fraction
                ):
                    return False, "dup_paragraph_fraction"
                if self.max_dup_paragraph_char_fraction and (
                    dup_chars / n_chars > self.max_dup_paragraph_char_fraction
                ):
                    return False, "dup_paragraph_char_fraction"
            if self.max_dup_line_fraction or self.max_dup_line_char_fraction:
                lines = [line for line in text.split("\n") if line]
                dups, dup_chars = duplicate_stats(lines)
                if self.max_dup_line_fraction and dups / len(lines) > self.max_dup_line_fraction:
                    return False, "dup_line_fraction"
                if self.max_dup_line_char_fraction and (
                    dup_chars / n_chars > self.max_dup_line_char_fraction
                ):
                    return False, "dup_line_char_fraction"
        if not (self.top_ngram_char_fractions or self.dup_ngram_char_fractions):
            return KEPT
        words = split_words(text)
        if len(words) < max(2, self.ngram_min_words):
            return KEPT
        ids = _word_ids(words)
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        # How often each position's word occurs in the document: an n-gram cannot occur more
        # often than its rarest word, and cannot repeat unless all its words do. Both bounds come
        # from one sort and let typical prose skip the exact n-gram counts below.
        _, inverse, word_counts = np.unique(ids, return_inverse=True, return_counts=True)
        occurs = word_counts[inverse]
        if occurs.max() < 2:
            return KEPT  # no word repeats, so no n-gram does
        cumulative = np.concatenate(([0], np.cumsum(lengths)))
        for n, limit in self.top_ngram_char_fractions:
            if not limit or len(words) < n:
                continue
            count = len(words) - n + 1
            rarest = occurs[:count].copy()
            for k in range(1, n):
                np.minimum(rarest, occurs[k : k + count], out=rarest)
            chars = cumulative[n:] - cumulative[:-n] + (n - 1)
            if int((rarest * chars).max()) / n_chars <= limit:
                continue  # even the best-placed n-gram cannot reach the limit
            h = _ngram_hashes(ids, n)
            _, first, counts = np.unique(h, return_index=True, return_counts=True)
            top = int(counts.max())
            if top < 2:
                continue
            start = int(first[counts == top].min())  # ties: the first to occur, like Counter
            ngram_chars = int(lengths[start : start + n].sum()) + n - 1  # " ".join
            if ngram_chars * top / n_chars > limit:
                return False, f"top_{n}_gram_char_fraction"
        dup = sorted((n, limit) for n, limit in self.dup_ngram_char_fractions if limit)
        if dup and len(words) >= dup[0][0]:
            smallest = min(limit for _, limit in dup)
            n0 = dup[0][0]
            # Upper bound on every n >= n0: words covered by windows of n0 repeated words.
            repeated = occurs >= 2
            count = len(words) - n0 + 1
            window = repeated[:count].copy()
            for k in range(1, n0):
                window &= repeated[k : k + count]
            if _covered_chars(window, n0, lengths) / n_chars <= smallest:
                return KEPT
            for i, (n, limit) in enumerate(dup):
                if len(words) < n:
                    break
                starts = _repeat_starts(_ngram_hashes(ids, n))
                fraction = _covered_chars(starts, n, lengths) / n_chars
                if fraction > limit:
                    return False, f"dup_{n}_gram_char_fraction"
                if i == 0 and fraction <= smallest:
                    break  # coverage never grows with n: every larger n passes too
        return KEPT
