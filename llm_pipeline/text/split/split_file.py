"""`split.json`: how the cleaned corpus was split (`split.SplitSummary`) and the leakage measured
on the parts it describes. Written by cleaning, read by the split checks, `token_shards`, the
report and the benchmarks, all through here.

The leakage figure carries the SHA-256 of the parts it was measured on (`parts_sha256`) and the
rule it was measured by (`leakage.LEAKAGE_RULE`), so the blocking `split_leakage` check can take
it as is while the table is byte-identical and the rule the same, and measures again when not
(a part edited by hand, a folder copied from elsewhere, a new rule): the same figure is not
computed twice per cleaning, and is never trusted for other bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_pipeline.atomic import write_json_atomic
from llm_pipeline.contracts import read_json_object
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.text.split.leakage import LEAKAGE_RULE, Leakage
from llm_pipeline.text.split.sides import SPLIT_FILE, SplitSummary

__all__ = ["SPLIT_FILE", "SplitFile", "parts_sha256", "read_split", "read_split_file"]


class SplitFileError(PipelineInputError):
    """A `split.json` that is missing or cannot be read."""


@dataclass
class SplitFile:
    """The contents of `split.json`."""

    summary: SplitSummary
    leakage: Leakage | None = None
    parts_sha256: str | None = None  # the parts the leakage was measured on
    leakage_rule: str = LEAKAGE_RULE  # and how

    def to_dict(self) -> dict[str, Any]:
        data = self.summary.to_dict()
        if self.leakage is not None:
            data["leakage"] = {
                **self.leakage.to_dict(),
                "parts_sha256": self.parts_sha256,
                "rule": self.leakage_rule,
            }
        return data

    def leakage_of(self, parts: list[Path]) -> Leakage | None:
        """The recorded leakage if it was measured by today's rule on exactly these parts'
        bytes, else None."""
        if self.leakage is None or self.parts_sha256 is None or self.leakage_rule != LEAKAGE_RULE:
            return None
        return self.leakage if parts_sha256(parts) == self.parts_sha256 else None


def parts_sha256(parts: Iterable[Path]) -> str:
    """SHA-256 over the parts' names and bytes (about 1 GB/s: a fraction of a second per
    corpus, against seconds to measure the leakage again)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.name.encode() + b"\0")
        with open(part, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def write_split_file(folder: Path, split: SplitFile) -> None:
    """Write `folder/split.json` atomically."""
    write_json_atomic(folder / SPLIT_FILE, split.to_dict())


def read_split_file(folder: Path) -> SplitFile:
    """`folder/split.json`; `SplitFileError` naming the file and the reason if unreadable."""
    file = folder / SPLIT_FILE
    data = read_json_object(file, "the split of the cleaned corpus", SplitFileError)
    raw = data.pop("leakage", None)
    try:
        summary = SplitSummary.from_dict(data)
        leakage, sha, rule = None, None, ""
        if isinstance(raw, dict):
            sha, rule = raw.get("parts_sha256"), str(raw.get("rule", ""))
            extra = ("parts_sha256", "rule")
            leakage = Leakage.from_dict({k: v for k, v in raw.items() if k not in extra})
    except TypeError as exc:
        raise SplitFileError(f"{file}: not a split written by cleaned_corpus ({exc})") from None
    return SplitFile(summary, leakage, sha, rule)


def read_split(folder: Path) -> SplitSummary:
    """The split summary of a cleaned corpus folder (see `read_split_file`)."""
    return read_split_file(folder).summary
