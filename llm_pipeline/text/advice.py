"""What to try when cleaning removed most of a corpus: the filter responsible, and a profile
that would keep its bytes, measured on the sample of documents that filter removed.

The advice is measured, not guessed: every other profile's filters are run on the sampled
removals of the responsible filter (`_dropped/<filter>.parquet`), and the profile that keeps the
most of their bytes (the first in `PROFILES` on a tie) is named with the share it keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from llm_pipeline.text.clean import CleaningConfig
from llm_pipeline.text.filters.filter_pass import FilterPlan, filter_batch
from llm_pipeline.text.filters.profiles import PROFILES
from llm_pipeline.text.funnel import (
    EXACT_DUPLICATE,
    NEAR_DUPLICATE,
    NORMALIZE,
    PASSAGE_DUPLICATE,
    CleaningStats,
)

# Warn when cleaning removes more than this share of the input bytes.
HEAVY_LOSS_FRACTION = 0.5


@dataclass(frozen=True)
class CleaningAdvice:
    """The responsible step, the share of input bytes it removed, and a better profile (if any)
    with the share of the sampled removals it would keep."""

    step: str
    removed_fraction: float
    total_removed_fraction: float
    profile: str | None
    kept_fraction: float

    def message(self, current_profile: str) -> str:
        """One warning a person can act on."""
        head = (
            f"cleaning removed {100 * self.total_removed_fraction:.0f}% of the bytes; "
            f"{self.step!r} alone removed {100 * self.removed_fraction:.0f}% "
            f"(profile {current_profile!r})."
        )
        if self.step == PASSAGE_DUPLICATE:
            return head + (
                " Most of the text is passages repeated across documents, kept once each; to "
                "keep every copy, set `cleaned_corpus: {passage_dedup: false}` (the split then "
                "has shared text on both sides, which split_ngram_overlap reports)."
            )
        if self.profile is None:
            return head + (
                " No other profile keeps those documents; relax that filter's thresholds in the "
                "cleaned_corpus config, or add more text."
            )
        return head + (
            f" Profile {self.profile!r} keeps {100 * self.kept_fraction:.0f}% of the bytes "
            f"it removed (measured on a sample): set `cleaned_corpus: {{profile: {self.profile}}}`."
        )


def _kept_by(config: CleaningConfig, texts: list[str]) -> float:
    """Share of the bytes of `texts` that `config`'s filters keep (dedup aside): bytes, not
    documents, so a profile that keeps a document but edits most of it away (C4 lines) does
    not count as keeping it."""
    result = filter_batch(texts, [""] * len(texts), FilterPlan(tuple(config.filters()), 0, None))
    return sum(result.n_bytes) / max(result.bytes_in, 1)


def cleaning_advice(
    stats: CleaningStats, config: CleaningConfig, dropped_dir: Path
) -> CleaningAdvice | None:
    """Advice when more than `HEAVY_LOSS_FRACTION` of the input bytes were removed, else None."""
    if stats.bytes_in <= 0 or stats.bytes_out >= (1 - HEAVY_LOSS_FRACTION) * stats.bytes_in:
        return None
    removed = {
        step: stats.dropped_bytes.get(step, 0) + stats.edited_bytes.get(step, 0)
        for step in set(stats.dropped_bytes) | set(stats.edited_bytes)
    }
    step = max(removed, key=lambda name: removed[name])
    total = 1 - stats.bytes_out / stats.bytes_in
    share = removed[step] / stats.bytes_in
    sample_file = Path(dropped_dir) / f"{step}.parquet"
    texts = []
    if sample_file.is_file():
        texts = pq.read_table(sample_file, columns=["text"]).column(0).to_pylist()
    best, best_kept = None, 0.0
    # Duplicates and normalisation are the same in every profile: no profile keeps those bytes.
    if texts and step not in (EXACT_DUPLICATE, NEAR_DUPLICATE, PASSAGE_DUPLICATE, NORMALIZE):
        for profile in PROFILES:
            if profile == config.profile:
                continue
            kept = _kept_by(CleaningConfig.from_profile(profile), texts)
            if kept > best_kept:
                best, best_kept = profile, kept
    if best_kept < 0.5:
        best, best_kept = None, 0.0
    return CleaningAdvice(step, share, total, best, best_kept)
