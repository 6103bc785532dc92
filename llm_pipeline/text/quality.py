"""Quality and repetition filters after Gopher (Rae et al. 2021) and C4 (Raffel et al. 2020).

Each filter is a small named unit in datatrove's shape: `reject(text)` returns the reason a
document is dropped (or None to keep it) and `keep(text)` is its negation; the cleaning loop
counts every dropped document under the filter's `name` and the reason under the filter. Every
threshold is a documented parameter, and 0 (or None for a ratio that has no natural "off" value)
turns that single rule off. The defaults are the published ones (datatrove's); `profiles.py`
relaxes them where they would throw away legitimate books, documentation or code.

Words are whitespace-separated tokens, not spaCy tokens as in datatrove: punctuation stays
attached to its word, so "be," is an alphabetic word and "--" a symbol word. That is faster by
an order of magnitude, needs no language model, and makes the alphabetic-word rule fair to
punctuated prose (datatrove's version drops a third of Shakespeare, whose punctuation spaCy
counts as non-alphabetic words).

Hot-path notes: every rule works on `str.split()` lists, set sizes and `str.count`, all in C;
n-gram repetition hashes word ids with numpy and checks the cheap n=5 bound before n=6..10.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from itertools import filterfalse, islice

import numpy as np

# ASCII and common Unicode punctuation: a word made only of these is a "symbol word".
PUNCTUATION = frozenset(string.punctuation + "–—‘’“”…«»·•¿¡")
STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
_STOP_WORD_RE = re.compile(r"(?<![\w'])(?:the|be|to|of|and|that|have|with)(?![\w'])")
_LETTER = re.compile(r"[^\W\d_]")
_PUNCTUATION_CHARS = "".join(sorted(PUNCTUATION))
_PARAGRAPHS = re.compile(r"\n{2,}")


_last_split: list = [None, None]


def split_words(text: str) -> list[str]:
    """`text.split()`, remembered for the last text: the filters that run one after another on
    the same document share one split instead of paying for it each."""
    if _last_split[0] is not text:
        _last_split[0], _last_split[1] = text, text.split()
    return _last_split[1]


class _Rule:
    """`keep` is defined once, on top of each filter's `reject`."""

    name: str

    def reject(self, text: str) -> str | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def keep(self, text: str) -> bool:
        return self.reject(text) is None


@dataclass(frozen=True)
class GopherQualityFilter(_Rule):
    """Gopher's quality heuristics (MassiveText, appendix A1), one reason per rule:

    - `min_words` / `max_words`: non-symbol words in the document (default 50 - 100,000);
    - `min_mean_word_length` / `max_mean_word_length`: mean length of non-symbol words (3 - 10);
    - `max_symbol_word_ratio`: `#` and `...`/`…` occurrences per word (0.1 each);
    - `max_bullet_lines_fraction`: lines starting with a bullet (`•`, `-`, `*`) (0.9);
    - `max_ellipsis_lines_fraction`: lines ending in `...` or `…` (0.3);
    - `min_alpha_words_fraction`: words containing a letter (0.8);
    - `min_stop_words`: occurrences of the, be, to, of, and, that, have, with (2).
    """

    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_fraction: float = 0.9
    max_ellipsis_lines_fraction: float = 0.3
    min_alpha_words_fraction: float = 0.8
    min_stop_words: int = 2
    name: str = "gopher_quality"

    def reject(self, text: str) -> str | None:
        words = split_words(text)
        n_words = len(words)
        if n_words == 0:
            return "no_words"
        # Words that are not all letters are the minority; only they need a closer look.
        others = list(filterfalse(str.isalpha, words))
        symbol_words = [w for w in others if not w.strip(_PUNCTUATION_CHARS)]
        n_real = n_words - len(symbol_words)
        if self.min_words and n_real < self.min_words:
            return "too_few_words"
        if self.max_words and n_real > self.max_words:
            return "too_many_words"
        if self.min_mean_word_length or self.max_mean_word_length:
            chars = sum(map(len, words)) - sum(map(len, symbol_words))
            mean = chars / n_real if n_real else 0.0
            if self.min_mean_word_length and mean < self.min_mean_word_length:
                return "mean_word_length_low"
            if self.max_mean_word_length and mean > self.max_mean_word_length:
                return "mean_word_length_high"
        if self.max_symbol_word_ratio:
            if text.count("#") / n_words > self.max_symbol_word_ratio:
                return "too_many_hashes"
            if (text.count("...") + text.count("…")) / n_words > self.max_symbol_word_ratio:
                return "too_many_ellipses"
        if self.max_bullet_lines_fraction or self.max_ellipsis_lines_fraction:
            lines = text.split("\n")
            if self.max_bullet_lines_fraction and ("-" in text or "•" in text or "*" in text):
                bullets = sum(1 for ln in lines if ln.lstrip()[:1] in ("•", "-", "*"))
                if bullets / len(lines) > self.max_bullet_lines_fraction:
                    return "too_many_bullet_lines"
            if self.max_ellipsis_lines_fraction and ("..." in text or "…" in text):
                ends = sum(1 for ln in lines if ln.endswith(("...", "…")))
                if ends / len(lines) > self.max_ellipsis_lines_fraction:
                    return "too_many_ellipsis_lines"
        if self.min_alpha_words_fraction:
            search = _LETTER.search
            alpha = n_words - len(others) + sum(1 for w in others if search(w))
            if alpha / n_words < self.min_alpha_words_fraction:
                return "too_few_alpha_words"
        if self.min_stop_words:
            # Stop at the minimum: a long document costs no more than a short one.
            found = sum(1 for _ in islice(_STOP_WORD_RE.finditer(text), self.min_stop_words))
            if found < self.min_stop_words:
                return "too_few_stop_words"
        return None


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
class GopherRepetitionFilter(_Rule):
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

    def reject(self, text: str) -> str | None:
        n_chars = len(text)
        if n_chars == 0:
            return None
        if "\n" in text:
            if self.max_dup_paragraph_fraction or self.max_dup_paragraph_char_fraction:
                paragraphs = [p for p in _PARAGRAPHS.split(text) if p]
                dups, dup_chars = duplicate_stats(paragraphs)
                if self.max_dup_paragraph_fraction and (
                    dups / len(paragraphs) > self.max_dup_paragraph_fraction
                ):
                    return "dup_paragraph_fraction"
                if self.max_dup_paragraph_char_fraction and (
                    dup_chars / n_chars > self.max_dup_paragraph_char_fraction
                ):
                    return "dup_paragraph_char_fraction"
            if self.max_dup_line_fraction or self.max_dup_line_char_fraction:
                lines = [line for line in text.split("\n") if line]
                dups, dup_chars = duplicate_stats(lines)
                if self.max_dup_line_fraction and dups / len(lines) > self.max_dup_line_fraction:
                    return "dup_line_fraction"
                if self.max_dup_line_char_fraction and (
                    dup_chars / n_chars > self.max_dup_line_char_fraction
                ):
                    return "dup_line_char_fraction"
        if not (self.top_ngram_char_fractions or self.dup_ngram_char_fractions):
            return None
        words = split_words(text)
        if len(words) < max(2, self.ngram_min_words):
            return None
        ids = _word_ids(words)
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        # How often each position's word occurs in the document: an n-gram cannot occur more
        # often than its rarest word, and cannot repeat unless all its words do. Both bounds come
        # from one sort and let typical prose skip the exact n-gram counts below.
        _, inverse, word_counts = np.unique(ids, return_inverse=True, return_counts=True)
        occurs = word_counts[inverse]
        if occurs.max() < 2:
            return None  # no word repeats, so no n-gram does
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
                return f"top_{n}_gram_char_fraction"
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
                return None
            for i, (n, limit) in enumerate(dup):
                if len(words) < n:
                    break
                starts = _repeat_starts(_ngram_hashes(ids, n))
                fraction = _covered_chars(starts, n, lengths) / n_chars
                if fraction > limit:
                    return f"dup_{n}_gram_char_fraction"
                if i == 0 and fraction <= smallest:
                    break  # coverage never grows with n: every larger n passes too
        return None


# C4 (Raffel et al. 2020, section 2.2) line rules, as in datatrove's C4QualityFilter.
C4_TERMINAL_PUNCTUATION = (".", "?", "!", '"', "'", "”", "’")
C4_POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
_SENTENCE_END = re.compile(r"[.!?]+(?=[\s\"'”’)]|$)")


@dataclass(frozen=True)
class LineCleanResult:
    """What C4 line cleaning did to one document: its new text (None if the whole document is
    dropped), the reason for a drop, and how many lines it removed."""

    text: str | None
    reason: str | None
    lines_removed: int


@dataclass(frozen=True)
class C4LineFilter:
    """C4-style line cleaning, a transform rather than a yes/no rule: removes lines that

    - do not end in terminal punctuation (`require_terminal_punctuation`; `...` does not count),
    - have fewer than `min_words_per_line` words (3),
    - contain a word longer than `max_word_length` characters (1000),
    - mention javascript (`drop_javascript_lines`) or cookie/privacy policies
      (`drop_policy_lines`),

    strips citation markers like `[1]` and `[edit]`, and drops the whole document when a line
    contains "lorem ipsum" (`drop_lorem_ipsum`) or `{` (`drop_curly_bracket`, code-like pages), or
    when fewer than `min_sentences` sentences (5) survive. Blank lines between kept lines are
    kept, so paragraphs stay paragraphs. Removed lines are counted.
    """

    require_terminal_punctuation: bool = True
    min_words_per_line: int = 3
    max_word_length: int = 1000
    drop_javascript_lines: bool = True
    drop_policy_lines: bool = True
    remove_citations: bool = True
    drop_lorem_ipsum: bool = True
    drop_curly_bracket: bool = True
    min_sentences: int = 5
    name: str = "c4_lines"

    def clean(self, text: str) -> LineCleanResult:
        kept: list[str] = []
        removed = 0
        sentences = 0
        edited = False
        lowered_text = text.lower()
        # As in C4 (and datatrove), the document-level rules look only at lines that survive
        # the line rules; the substring tests on the whole text skip the per-line work when a
        # rule cannot fire at all.
        check_lorem = self.drop_lorem_ipsum and "lorem ipsum" in lowered_text
        check_js = self.drop_javascript_lines and "javascript" in lowered_text
        check_curly = self.drop_curly_bracket and "{" in text
        check_policy = self.drop_policy_lines and any(
            p in lowered_text for p in C4_POLICY_SUBSTRINGS
        )
        for line in text.split("\n"):
            stripped = line.strip()
            if not stripped:
                if kept and kept[-1]:
                    kept.append("")
                continue
            if self.remove_citations and "[" in stripped:
                cited = _CITATION.sub("", line).rstrip()
                if cited != line:
                    edited = True
                    line, stripped = cited, cited.strip()
            words = stripped.split()
            if (
                (
                    self.require_terminal_punctuation
                    and (not stripped.endswith(C4_TERMINAL_PUNCTUATION) or stripped.endswith("..."))
                )
                or len(words) < self.min_words_per_line
                or (self.max_word_length and max(map(len, words), default=0) > self.max_word_length)
            ):
                removed += 1
                continue
            if check_lorem or check_js or check_curly or check_policy:
                lowered = stripped.lower()
                if check_lorem and "lorem ipsum" in lowered:
                    return LineCleanResult(None, "lorem_ipsum", removed)
                if check_js and "javascript" in lowered:
                    removed += 1
                    continue
                if check_curly and "{" in stripped:
                    return LineCleanResult(None, "curly_bracket", removed)
                if check_policy and any(p in lowered for p in C4_POLICY_SUBSTRINGS):
                    removed += 1
                    continue
            if self.min_sentences:
                sentences += max(1, len(_SENTENCE_END.findall(stripped)))
            kept.append(line)
        if self.min_sentences and sentences < self.min_sentences:
            return LineCleanResult(None, "too_few_sentences", removed)
        while kept and not kept[-1]:
            kept.pop()
        if not kept:
            return LineCleanResult(None, "no_lines_left", removed)
        return LineCleanResult("\n".join(kept) if removed or edited else text, None, removed)
