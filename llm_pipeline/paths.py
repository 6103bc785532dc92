"""Where the pipeline reads and writes, and the one rule for corpus names.

No Dagster here: the CLI, the assets and the tests all resolve paths the same way. The data and
model roots come from `LLM_PIPELINE_DATA_DIR` / `LLM_PIPELINE_MODELS_DIR` so tests and users can
point a whole run at another disk without touching code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from llm_pipeline.errors import InvalidCorpusName, UnsafePathError

CORPUS_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

DATA_DIR_ENV = "LLM_PIPELINE_DATA_DIR"
MODELS_DIR_ENV = "LLM_PIPELINE_MODELS_DIR"


def project_root() -> Path:
    """The checkout this package lives in, or the working directory for a plain install."""
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").is_file() and (here / "llm_pipeline").is_dir():
        return here
    return Path.cwd()


def validate_corpus_name(name: str) -> str:
    """Return `name` if it is a safe corpus name, else raise `InvalidCorpusName`.

    The name is a partition key *and* a path segment (`data/raw/<name>/`), so anything that could
    escape the data root or collide with hidden/temporary files is refused.
    """
    if not isinstance(name, str) or not CORPUS_NAME_PATTERN.fullmatch(name) or ".." in name:
        raise InvalidCorpusName(
            f"invalid corpus name {name!r}: use 1-64 characters from lower-case letters, digits, "
            "'.', '_' and '-', starting with a letter or digit, and no '..'"
        )
    return name


def data_dir() -> Path:
    """Root of all data outputs (raw, cleaned, tokens)."""
    return Path(os.environ.get(DATA_DIR_ENV) or project_root() / "data")


def models_dir() -> Path:
    """Root of trained model checkpoints."""
    return Path(os.environ.get(MODELS_DIR_ENV) or project_root() / "models")


def within_root(root: Path, *parts: str) -> Path:
    """`root / parts...`, refused if it would resolve outside `root`.

    Guards every output and input folder the pipeline derives from a name: `..`, an absolute
    part, or a symlink planted anywhere below the root (say `data/cleaned/<corpus>` pointing at
    a home directory) would otherwise make a stage read or overwrite files elsewhere.
    """
    root = Path(root)
    path = root.joinpath(*parts)
    base = root.resolve()
    target = path.resolve()
    if not (target == base or target.is_relative_to(base)):
        raise UnsafePathError(
            f"{path}: resolves to {target}, outside {base}; refusing to read or write there "
            "(remove the symlink or fix the name)"
        )
    return path


def raw_dir(corpus: str, root: Path | None = None) -> Path:
    """The user's files for a corpus."""
    return within_root(root or data_dir(), "raw", validate_corpus_name(corpus))


def documents_dir(corpus: str, root: Path | None = None) -> Path:
    """`raw_corpus` output: the corpus's files read into one document table."""
    return within_root(root or data_dir(), "documents", validate_corpus_name(corpus))


def cleaned_dir(corpus: str, root: Path | None = None) -> Path:
    """`cleaned_corpus` output."""
    return within_root(root or data_dir(), "cleaned", validate_corpus_name(corpus))


def tokens_dir(corpus: str, root: Path | None = None) -> Path:
    """`tokenizer` and `token_shards` output."""
    return within_root(root or data_dir(), "tokens", validate_corpus_name(corpus))
