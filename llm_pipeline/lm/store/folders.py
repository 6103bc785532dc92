"""Which runs exist for a corpus, which is newest (`latest`) and which is promoted (`current`).

Both pointers are one-line text files written atomically, so they work on every filesystem
(no symlinks) and a reader never sees a half-written name. A pointer is read through one
no-follow descriptor, at most a few hundred bytes, and its content is never echoed in an error
(a pointer linked or edited to hold a secret must not land in logs or the UI).
"""

from __future__ import annotations

import re
from pathlib import Path

from llm_pipeline.atomic import write_bytes_atomic
from llm_pipeline.lm.store.checkpoint import CheckpointError
from llm_pipeline.paths import models_dir, validate_corpus_name, within_root
from llm_pipeline.safe_open import UnsafeFileError, describe_bytes, read_limited

LATEST = "latest"
# Dagster run ids are UUIDs; a pointer file edited to `../../x` must not name a folder elsewhere.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
CURRENT = "current"
# A run id is at most 128 characters; anything longer is not a pointer.
MAX_POINTER_BYTES = 256


def corpus_models_dir(corpus: str, root: Path | None = None) -> Path:
    return within_root(root or models_dir(), validate_corpus_name(corpus))


TRAINING_STATE = "_training_state"


def training_state_root(corpus: str, root: Path | None = None) -> Path:
    """Where interrupted runs of a corpus keep their resumable state, one folder per config;
    refused (like every run folder) when it resolves outside the models root."""
    return within_root(corpus_models_dir(corpus, root), TRAINING_STATE)


def run_dir(corpus: str, run_id: str, root: Path | None = None) -> Path:
    if (
        not run_id
        or not _RUN_ID.fullmatch(run_id)
        or run_id.startswith(".")
        or run_id in (LATEST, CURRENT, TRAINING_STATE)
    ):
        # Not echoed: the id may come from a pointer file linked to a secret.
        raise CheckpointError(
            f"invalid run id ({describe_bytes(run_id.encode())}): expected letters, digits, "
            "'.', '_' or '-', at most 128"
        )
    return within_root(corpus_models_dir(corpus, root), run_id)


def read_pointer(corpus: str, name: str, root: Path | None = None) -> str | None:
    """The run id a pointer names, or None if it does not exist yet."""
    folder = corpus_models_dir(corpus, root)
    file = folder / name
    try:
        data, more = read_limited(file, MAX_POINTER_BYTES)
    except FileNotFoundError:
        return None
    except (UnsafeFileError, OSError) as exc:
        reason = exc.reason if isinstance(exc, UnsafeFileError) else exc.strerror or exc
        raise CheckpointError(f"{file}: pointer cannot be read ({reason})") from None
    try:
        value = data.decode("ascii").strip()
    except UnicodeDecodeError:
        value = None
    if more or value is None:  # the id itself is checked by run_dir, where it is used
        raise CheckpointError(
            f"{file}: invalid run id ({describe_bytes(data)}{', more not read' if more else ''});"
            f" rewrite it with a run id from {folder} or remove it"
        )
    return value or None


def write_pointer(corpus: str, name: str, run_id: str, root: Path | None = None) -> None:
    run_dir(corpus, run_id, root)  # validates the id
    write_bytes_atomic(corpus_models_dir(corpus, root) / name, (run_id + "\n").encode())


def resolve_run(corpus: str, run_id: str | None = None, root: Path | None = None) -> Path:
    """The folder of `run_id`, else of the promoted model, else of the newest one."""
    return choose_run(corpus, run_id, root)[0]


def choose_run(
    corpus: str, run_id: str | None = None, root: Path | None = None
) -> tuple[Path, str]:
    """`resolve_run` with why that model: "requested", "champion", or "latest" (there is no
    champion, so the newest model is used although it was never promoted)."""
    if run_id:
        why = "requested"
    elif (run_id := read_pointer(corpus, CURRENT, root)) is not None:
        why = "champion"
    else:
        run_id, why = read_pointer(corpus, LATEST, root), "latest"
    if run_id is None:
        raise CheckpointError(
            f"corpus {corpus!r} has no trained model in {corpus_models_dir(corpus, root)}"
        )
    path = run_dir(corpus, run_id, root)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    return path, why
