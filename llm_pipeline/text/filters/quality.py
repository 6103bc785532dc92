"""Quality filters after Gopher (Rae et al. 2021) and C4 (Raffel et al. 2020).

Gopher's quality heuristics live here; Gopher's repetition rules in `repetition.py` and C4's line
cleaning in `c4.py`, all three importable from this module, the one place profiles and the
cleaning settings take them from. Each speaks the filter protocol of `filters/basic.py`:
`filter(text) -> (kept, reason)`, one reason per rule, and the pass that runs them counts each
drop under the filter's `name` and the reason under it. Every threshold is a documented
parameter, and 0 turns that single rule off. The defaults are the published ones (datatrove's);
`profiles.py` relaxes them where they would throw away legitimate books, documentation or code.

Words are whitespace-separated tokens, not spaCy tokens as in datatrove: punctuation stays
attached to its word, so "be," is an alphabetic word and "--" a symbol word. That is faster by
an order of magnitude, needs no language model, and makes the alphabetic-word rule fair to
punctuated prose (datatrove's version drops a third of Shakespeare, whose punctuation spaCy
counts as non-alphabetic words).

Hot-path notes: every rule works on `str.split()` lists (shared with the repetition filter by
`split_words`), set sizes and `str.count`, all in C.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from itertools import filterfalse, islice

from llm_pipeline.text.filters.basic import KEPT, DocumentFilter, split_words
from llm_pipeline.text.filters.c4 import C4LineFilter
from llm_pipeline.text.filters.repetition import GopherRepetitionFilter

__all__ = [
    "PUNCTUATION",
    "C4LineFilter",
    "GopherQualityFilter",
    "GopherRepetitionFilter",
]

# ASCII and common Unicode punctuation: a word made only of these is a "symbol word".
PUNCTUATION = frozenset(string.punctuation + "–—‘’“”…«»·•¿¡")
# Gopher's stop words, matched as whole words: the, be, to, of, and, that, have, with.
_STOP_WORD_RE = re.compile(r"(?<![\w'])(?:the|be|to|of|and|that|have|with)(?![\w'])")
_LETTER = re.compile(r"[^\W\d_]")
_PUNCTUATION_CHARS = "".join(sorted(PUNCTUATION))


@dataclass(frozen=True)
class GopherQualityFilter(DocumentFilter):
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

    def filter(self, text: str) -> tuple[bool, str | None]:
        words = split_words(text)
        n_words = len(words)
        if n_words == 0:
            return False, "no_words"
        # Words that are not all letters are the minority; only they need a closer look.
        others = list(filterfalse(str.isalpha, words))
        symbol_words = [w for w in others if not w.strip(_PUNCTUATION_CHARS)]
        n_real = n_words - len(symbol_words)
        if self.min_words and n_real < self.min_words:
            return False, "too_few_words"
        if self.max_words and n_real > self.max_words:
            return False, "too_many_words"
        if self.min_mean_word_length or self.max_mean_word_length:
            chars = sum(map(len, words)) - sum(map(len, symbol_words))
            mean = chars / n_real if n_real else 0.0
            if self.min_mean_word_length and mean < self.min_mean_word_length:
                return False, "mean_word_length_low"
            if self.max_mean_word_length and mean > self.max_mean_word_length:
                return False, "mean_word_length_high"
        if self.max_symbol_word_ratio:
            if text.count("#") / n_words > self.max_symbol_word_ratio:
                return False, "too_many_hashes"
            if (text.count("...") + text.count("…")) / n_words > self.max_symbol_word_ratio:
                return False, "too_many_ellipses"
        if self.max_bullet_lines_fraction or self.max_ellipsis_lines_fraction:
            lines = text.split("\n")
            if self.max_bullet_lines_fraction and ("-" in text or "•" in text or "*" in text):
                bullets = sum(1 for ln in lines if ln.lstrip()[:1] in ("•", "-", "*"))
                if bullets / len(lines) > self.max_bullet_lines_fraction:
                    return False, "too_many_bullet_lines"
            if self.max_ellipsis_lines_fraction and ("..." in text or "…" in text):
                ends = sum(1 for ln in lines if ln.endswith(("...", "…")))
                if ends / len(lines) > self.max_ellipsis_lines_fraction:
                    return False, "too_many_ellipsis_lines"
        if self.min_alpha_words_fraction:
            search = _LETTER.search
            alpha = n_words - len(others) + sum(1 for w in others if search(w))
            if alpha / n_words < self.min_alpha_words_fraction:
                return False, "too_few_alpha_words"
        if self.min_stop_words:
            # Stop at the minimum: a long document costs no more than a short one.
            found = sum(1 for _ in islice(_STOP_WORD_RE.finditer(text), self.min_stop_words))
            if found < self.min_stop_words:
                return False, "too_few_stop_words"
        return KEPT
