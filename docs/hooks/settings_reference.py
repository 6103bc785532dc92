"""MkDocs hook: the configuration page's reference, rendered from the settings at build time.

`docs/configuration.md` holds the marker comment below; this hook replaces it with
`llm_pipeline.settings_reference.settings_reference_markdown()`, so the published defaults,
bounds and descriptions are the code's own and cannot drift. A page without the marker is left
alone; a configuration page that lost its marker fails the build instead of publishing a page
without its reference.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

MARKER = "<!-- settings-reference -->"
PAGE = "configuration.md"

# The reference describes the checkout being built, not whichever copy of the package happens to
# be installed: the repository root (mkdocs.yml's folder) goes first on the import path.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Put the generated reference where the configuration page has its marker."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"docs/{PAGE} has no {MARKER} marker for the settings reference")
    from llm_pipeline.settings_reference import settings_reference_markdown

    return markdown.replace(MARKER, settings_reference_markdown())
