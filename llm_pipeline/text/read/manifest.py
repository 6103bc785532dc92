"""The raw manifest, `data/documents/<corpus>/manifest.json`: which raw files were read, and how.

`raw_corpus` writes it next to the document table; `trained_model` copies its fingerprint into
the checkpoint, so the schedule can tell later whether the raw files changed since a model was
trained. Version 0 is the same layout without a `format_version`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llm_pipeline.atomic import write_json_atomic
from llm_pipeline.contracts import VERSION_KEY, dataclass_fields, format_version, read_json_object

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT_VERSION = 1
WHAT = "raw manifest"


@dataclass
class RawManifest:
    """A corpus's raw files' fingerprint (paths and bytes) and the reader's counts."""

    corpus: str
    fingerprint: str
    stats: dict[str, Any] = field(default_factory=dict)
    format_version: int = MANIFEST_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), VERSION_KEY: MANIFEST_FORMAT_VERSION}

    @classmethod
    def from_dict(cls, data: dict[str, Any], file: Path | str = MANIFEST_FILE) -> RawManifest:
        format_version(data, MANIFEST_FORMAT_VERSION, file, WHAT)
        values = dataclass_fields(cls, data, file, WHAT)
        return cls(**{**values, "format_version": MANIFEST_FORMAT_VERSION})

    def write(self, folder: Path) -> Path:
        """Write `folder/manifest.json` atomically; returns its path."""
        file = Path(folder) / MANIFEST_FILE
        write_json_atomic(file, self.to_dict())
        return file


def read_raw_manifest(folder: Path) -> RawManifest | None:
    """The manifest in a documents folder, or None when the folder has none (not yet read)."""
    file = Path(folder) / MANIFEST_FILE
    if not file.is_file():
        return None
    return RawManifest.from_dict(read_json_object(file, WHAT), file)
