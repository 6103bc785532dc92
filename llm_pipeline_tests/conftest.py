"""Shared fixtures: every test gets its own data root, models root and Dagster home."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")

WORDS = (
    "the model reads text and learns which token comes next from the data it sees while the "
    "pipeline cleans documents removes duplicates trains a tokenizer writes shards and "
    "checks every stage so that a bad corpus never reaches training river mountain garden "
    "letter window quiet bright simple number return value function class method string list "
).split()


def make_document(rng: random.Random, n_words: int) -> str:
    """A readable pseudo-English document with a few paragraphs."""
    paragraphs = []
    remaining = n_words
    while remaining > 0:
        size = min(remaining, rng.randint(15, 60))
        words = [rng.choice(WORDS) for _ in range(size)]
        paragraphs.append(" ".join(words).capitalize() + ".")
        remaining -= size
    return "\n\n".join(paragraphs)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("LLM_PIPELINE_DATA_DIR", str(root))
    monkeypatch.setenv("LLM_PIPELINE_MODELS_DIR", str(tmp_path / "models"))
    return root


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real Dagster instance in a temporary DAGSTER_HOME."""
    from dagster import DagsterInstance

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as dagster_instance:
        yield dagster_instance
