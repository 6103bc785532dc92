"""User text inside Markdown that a hub or a browser renders: shown as text, never as markup.

Shared by the evaluation report (report/markdown.py) and the export's model card
(lm/export/card.py), which quote file names, run ids and config fields anyone who can write
into the roots may have chosen. No Dagster here.
"""

from __future__ import annotations

import re
from typing import Any

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#!])")


def markdown_text(text: Any) -> str:
    """Inline Markdown text: whitespace collapsed (no new block: heading, list, fence) and
    punctuation backslash-escaped (no emphasis, links, images or raw HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def markdown_code(text: Any) -> str:
    """An inline code span of `text` on one line, fenced with more backticks than any run in it,
    so it cannot be closed early (HTML and Markdown inside a code span are shown literally)."""
    text = " ".join(str(text).split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text[:1] == "`" or text[-1:] == "`" else ""  # CommonMark strips one each side
    return f"{fence}{pad}{text}{pad}{fence}" if text else "unknown"
