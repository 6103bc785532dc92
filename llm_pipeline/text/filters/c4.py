"""C4 line cleaning (Raffel et al. 2020, section 2.2), as in datatrove's C4QualityFilter.

A `TextTransform`, not a yes/no rule: it removes lines and may then drop the whole document, so
it answers `transform(text)` with the new text; the cleaning pass counts the edits and drops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llm_pipeline.text.filters.basic import TextTransform, Transformed

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
class C4LineFilter(TextTransform):
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

    def transform(self, text: str) -> Transformed:
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
                    return Transformed(None, "lorem_ipsum", removed)
                if check_js and "javascript" in lowered:
                    removed += 1
                    continue
                if check_curly and "{" in stripped:
                    return Transformed(None, "curly_bracket", removed)
                if check_policy and any(p in lowered for p in C4_POLICY_SUBSTRINGS):
                    removed += 1
                    continue
            if self.min_sentences:
                sentences += max(1, len(_SENTENCE_END.findall(stripped)))
            kept.append(line)
        if self.min_sentences and sentences < self.min_sentences:
            return Transformed(None, "too_few_sentences", removed)
        while kept and not kept[-1]:
            kept.pop()
        if not kept:
            return Transformed(None, "no_lines_left", removed)
        return Transformed("\n".join(kept) if removed or edited else text, None, removed)
