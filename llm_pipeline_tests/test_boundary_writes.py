"""The boundary, second round (issue 25, findings 1, 2, 3, 5 and 8; 4 is in test_export.py).

Each test plays a local user who can write into the data or models root while a step runs: it
renames what the pipeline created there and plants a symlink to a private (0600/0700) file or
folder outside, or a FIFO where the pipeline reads. Where the swap must land between two of the
pipeline's operations, a hook runs it at exactly that point, so each test is deterministic.
Each failed on the code before this round (`git stash` the library, rerun this file).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_pipeline import atomic, locking
from llm_pipeline.atomic import atomic_dir
from llm_pipeline.errors import UnsafePathError
from llm_pipeline.safe_open import UnsafeFileError
from llm_pipeline.tokens import shards
from llm_pipeline.tokens.bpe import end_of_text_id, train_bpe

SECRET = b"db_password=hunter2\n"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A private file outside the roots (0600): what a swapped path must never reach."""
    file = tmp_path / "outside" / "victim.txt"
    file.parent.mkdir(mode=0o700)
    file.write_bytes(SECRET)
    file.chmod(0o600)
    return file


def _unchanged(file: Path) -> bool:
    return file.read_bytes() == SECRET and stat.S_IMODE(file.stat().st_mode) == 0o600


def _swap_for_link(entry: Path, target: Path) -> None:
    """What another user does to an entry the pipeline created in a shared folder: rename it
    away (renaming needs write access to the folder only) and leave a symlink in its place."""
    entry.rename(entry.with_name(entry.name + ".moved"))
    entry.symlink_to(target)


def _temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(".tmp") and not p.is_symlink())


def _in_thread(call: Callable[[], object], seconds: float = 10) -> list:
    """Run `call` on a thread; [result] or [exception], or [] if it still blocks."""
    result: list = []

    def run() -> None:
        try:
            result.append(call())
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    return result


def _unblock(fifo: Path) -> None:
    """Open the FIFO's other end so a reader hung on it (the old code) returns."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


# --- 1. the lock file, swapped while a step waits for it ------------------------------------


def test_a_lock_swapped_for_a_link_while_a_step_waits_is_never_written_through(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "data" / "documents"
    folder.mkdir(parents=True)
    waiting, release = threading.Event(), threading.Event()
    real_sleep = time.sleep
    monkeypatch.setattr(locking.time, "sleep", lambda s: (waiting.set(), real_sleep(s)))

    def holder() -> None:
        with locking.output_lock(folder, "c1"):
            release.wait(10)

    held = threading.Thread(target=holder)
    held.start()
    real_sleep(0.2)
    outcome: list = []

    def wait() -> None:
        try:
            with locking.output_lock(folder, "c1", timeout=10):
                outcome.append("locked")
        except Exception as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    assert waiting.wait(10)  # the waiter holds the lock file open and polls
    _swap_for_link(locking.lock_path(folder, "c1"), victim)
    release.set()
    held.join(10)
    waiter.join(15)
    assert _unchanged(victim), "the waiter truncated the link's target and wrote its pid"
    assert outcome and isinstance(outcome[0], UnsafeFileError)


# --- 2. token shards: the temporary files swapped before they are published ------------------


def _small_tokenizer():
    texts = [f"document number {i} about rivers and mountains" for i in range(50)]
    return train_bpe([texts], vocab_size=300)


def test_a_swapped_temporary_shard_is_never_chmoded_or_published(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "data" / "tokens" / "c"
    out.mkdir(parents=True)
    tokenizer = _small_tokenizer()
    real_publish = shards._publish

    def publish_after_a_swap(*args, **kwargs):
        for entry in _temporaries(out):  # everything the writer left in the shared folder
            _swap_for_link(entry, victim)
        return real_publish(*args, **kwargs)

    monkeypatch.setattr(shards, "_publish", publish_after_a_swap)
    texts = ["some text here", "more text there", "the last document"]
    batches = [(texts, [len(t) for t in texts], [False, True, False])]
    try:
        meta = shards.write_shards(tokenizer, batches, out, end_of_text_id(tokenizer))
    except (UnsafePathError, OSError):
        meta = None  # refusing is fine; chmod'ing or publishing the victim is not
    assert _unchanged(victim), "the victim was chmod'ed (or emptied) through the link"
    for name in ("train.bin", "val.bin", "meta.json"):
        assert not (out / name).is_symlink(), f"{name} was published as a link"
    if meta is not None:
        assert len(shards.open_split(out, "train")) == meta["splits"]["train"]["tokens"] > 0


# --- 3. an atomic folder: its temporary folder renamed and replaced by a link -----------------


def test_a_swapped_temporary_folder_gets_no_write_no_chmod_and_is_not_published(
    tmp_path: Path,
) -> None:
    parent = tmp_path / "data" / "cleaned"
    parent.mkdir(parents=True)
    outside = tmp_path / "outside-folder"
    outside.mkdir(mode=0o700)
    final = parent / "c"
    with pytest.raises(UnsafePathError, match="renamed or replaced"):
        with atomic_dir(final) as tmp:
            (tmp / "part-0.parquet").write_bytes(b"first part")
            (entry,) = _temporaries(parent)
            _swap_for_link(entry, outside)
            (tmp / "manifest.json").write_text("{}")  # the writer goes on, by its path
    assert list(outside.iterdir()) == [], "a write went through the link"
    assert stat.S_IMODE(outside.stat().st_mode) == 0o700, "the link's target was chmod'ed"
    assert not final.is_symlink() and not final.exists()


def test_a_temporary_folder_swapped_just_before_publishing_is_not_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = tmp_path / "data" / "documents"
    parent.mkdir(parents=True)
    outside = tmp_path / "outside-folder"
    outside.mkdir(mode=0o700)
    real_fsync_tree = atomic._fsync_tree

    def fsync_then_swap(root: Path) -> None:  # the last step before the rename, then the swap
        real_fsync_tree(root)
        (entry,) = _temporaries(parent)
        _swap_for_link(entry, outside)

    monkeypatch.setattr(atomic, "_fsync_tree", fsync_then_swap)
    with pytest.raises(UnsafePathError):
        with atomic_dir(parent / "c") as tmp:
            (tmp / "part-0.parquet").write_bytes(b"part")
    assert not (parent / "c").is_symlink(), "the corpus folder was published as a link"
    assert stat.S_IMODE(outside.stat().st_mode) == 0o700


def test_a_swap_between_the_check_and_the_rename_is_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The narrowest window (after the name is checked, before the rename): the link that got
    published is removed at once and the step fails. (New code only: the hook is new.)"""
    parent = tmp_path / "data" / "documents"
    parent.mkdir(parents=True)
    outside = tmp_path / "outside-folder"
    outside.mkdir(mode=0o700)
    real_check = atomic.PrivateDir.check_named

    def check_then_swap(self) -> None:
        real_check(self)
        _swap_for_link(parent / self.name, outside)

    monkeypatch.setattr(atomic.PrivateDir, "check_named", check_then_swap)
    with pytest.raises(UnsafePathError, match="link was removed"):
        with atomic_dir(parent / "c") as tmp:
            (tmp / "part-0.parquet").write_bytes(b"part")
    assert not (parent / "c").is_symlink() and list(outside.iterdir()) == []


def test_a_swapped_temporary_file_is_never_written_through(tmp_path: Path, victim: Path) -> None:
    out = tmp_path / "data" / "tokens" / "c" / "tokenizer.json"
    out.parent.mkdir(parents=True)
    try:
        with atomic.atomic_path(out) as tmp:
            (entry,) = _temporaries(out.parent)
            _swap_for_link(entry, victim if entry.is_file() else victim.parent)
            tmp.write_bytes(b'{"new": true}')
    except UnsafePathError:
        pass  # (the old code refused to publish, after writing through the link)
    assert _unchanged(victim), "the write went through the link"
    assert out.read_bytes() == b'{"new": true}' and not out.is_symlink()


# --- 5. MLflow artifacts selected without following links -------------------------------------


class _RecordingClient:
    """The MlflowClient calls `register_version` makes, recording what each artifact held."""

    def __init__(self) -> None:
        self.logged: dict[str, bytes] = {}

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        self.logged[Path(path).name] = Path(path).read_bytes()

    def search_model_versions(self, query: str) -> list:
        return []

    def create_registered_model(self, name: str) -> None:
        pass

    def create_model_version(self, name, source, run_id=None, tags=None):
        return type("Version", (), {"version": "1"})()


def test_artifacts_named_like_plots_or_model_files_are_not_shipped_through_links(
    tmp_path: Path, victim: Path
) -> None:
    from llm_pipeline.lm.tracking.records import report_files
    from llm_pipeline.lm.tracking.training_runs import register_version

    run = tmp_path / "models" / "c" / "run-1"
    hf = run / "export" / "hf"
    hf.mkdir(parents=True)
    (run / "report.md").write_text("# report\n")
    (run / "loss.png").symlink_to(victim)
    (hf / "config.json").write_text("{}")
    (hf / "model.safetensors").symlink_to(victim)
    assert [f.name for f in report_files(run)] == ["report.md"]
    client = _RecordingClient()
    register_version(client, "c", "run-1", "mlflow-run", run, export=True)
    assert client.logged == {"config.json": b"{}"}
    assert SECRET not in client.logged.values()


# --- 8. FIFOs and links where the pipeline reads its own files --------------------------------


def test_a_fifo_meta_json_is_refused_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "tokens" / "c"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "meta.json")
    result = _in_thread(lambda: shards.read_meta(folder))
    _unblock(folder / "meta.json")
    assert result and isinstance(result[0], UnsafeFileError), "read_meta hung on the FIFO"
    assert "FIFO" in str(result[0]) and "meta.json" in str(result[0])


def test_a_fifo_tokenizer_json_is_refused_at_once(tmp_path: Path) -> None:
    """In a child process: `Tokenizer.from_file` blocks on a FIFO holding the GIL, so a hung
    load would hang this process too. `generate` loads its tokenizer the same way."""
    run = tmp_path / "models" / "c" / "run-1"
    run.mkdir(parents=True)
    os.mkfifo(run / "tokenizer.json")
    code = (
        "import sys\n"
        "from llm_pipeline.tokens.bpe import load_tokenizer\n"
        "try:\n"
        "    load_tokenizer(sys.argv[1])\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    try:
        child = subprocess.run(
            [sys.executable, "-c", code, str(run / "tokenizer.json")],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    except subprocess.TimeoutExpired:
        pytest.fail("load_tokenizer hung on a FIFO tokenizer.json")
    assert child.stdout.startswith("UnsafeFileError") and "FIFO" in child.stdout


def test_a_shard_linked_to_a_file_outside_is_not_mapped(tmp_path: Path, victim: Path) -> None:
    folder = tmp_path / "data" / "tokens" / "c"
    folder.mkdir(parents=True)
    tokenizer = _small_tokenizer()
    texts = ["a document", "another one"]
    batches = [(texts, [len(t) for t in texts], [False, True])]
    shards.write_shards(tokenizer, batches, folder, end_of_text_id(tokenizer))
    (folder / "train.bin").unlink()
    (folder / "train.bin").symlink_to(victim)
    with pytest.raises(UnsafeFileError, match="train.bin: is a symbolic link"):
        shards.open_split(folder, "train")
