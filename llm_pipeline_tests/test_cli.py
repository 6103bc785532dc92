"""The `llm-pipeline` command against a real Dagster instance in a temporary DAGSTER_HOME."""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from dagster import AssetKey

from llm_pipeline.cli import main
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline.text.read.builtin import iter_stdlib_docstrings
from llm_pipeline_tests.test_pipeline import make_corpus


def test_corpus_add_places_files_folders_and_globs(
    tmp_path: Path, data_root: Path, instance, capsys
) -> None:
    src = tmp_path / "src"
    make_corpus(src)
    (src / "more").mkdir()
    (src / "more" / "x.md").write_text("# more text here")
    args = [
        "corpus",
        "add",
        "mixed",
        str(src / "book.txt"),
        str(src / "more"),
        str(src / "*.jsonl"),
    ]
    assert main(args) == 0
    placed = sorted(
        p.relative_to(data_root / "raw" / "mixed").as_posix()
        for p in (data_root / "raw" / "mixed").rglob("*")
        if p.is_file()
    )
    assert placed == ["book.txt", "records.jsonl", "x.md"]
    assert instance.has_dynamic_partition(CORPUS_PARTITIONS_NAME, "mixed")
    # Adding the same files again is a no-op; a different file with the same name is refused.
    assert main(args) == 0
    (src / "book.txt").write_text("changed")
    assert main(["corpus", "add", "mixed", str(src / "book.txt")]) == 2
    assert "already exists with different content" in capsys.readouterr().err
    assert main(["corpus", "add", "mixed", str(src / "book.txt"), "--force"]) == 0
    assert (data_root / "raw" / "mixed" / "book.txt").read_text() == "changed"


@pytest.mark.parametrize("name", ["../x", "Bad", "a/b"])
def test_corpus_add_refuses_invalid_names(
    tmp_path: Path, data_root: Path, instance, capsys, name: str
) -> None:
    (tmp_path / "a.txt").write_text("text")
    assert main(["corpus", "add", name, str(tmp_path / "a.txt")]) == 2
    assert "invalid corpus name" in capsys.readouterr().err
    assert not (data_root / "raw").exists()
    assert instance.get_dynamic_partitions(CORPUS_PARTITIONS_NAME) == []


def test_a_failed_add_leaves_no_empty_corpus_folder(data_root: Path, instance, capsys) -> None:
    assert main(["corpus", "add", "ghost", "/no/such/file.txt"]) == 2
    assert not (data_root / "raw" / "ghost").exists()


def test_corpus_add_missing_source(data_root: Path, instance, capsys) -> None:
    assert main(["corpus", "add", "c", "/no/such/file.txt"]) == 2
    assert "/no/such/file.txt: no such file or folder" in capsys.readouterr().err


def test_corpus_add_downloads_urls(tmp_path: Path, data_root: Path, instance, capsys) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "remote.txt").write_text("downloaded text " * 1000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/remote.txt"
        assert main(["corpus", "add", "web", url]) == 0
        assert "100.0%" in capsys.readouterr().err
        assert (data_root / "raw" / "web" / "remote.txt").read_text() == "downloaded text " * 1000
        assert main(["corpus", "add", "web2", url.replace("remote", "missing")]) == 2
        assert "download failed" in capsys.readouterr().err
        assert not (data_root / "raw" / "web2").exists()  # nothing saved, no empty folder
    finally:
        server.shutdown()


def test_materialize_with_yaml_config_then_list(
    tmp_path: Path, data_root: Path, instance, capsys
) -> None:
    src = tmp_path / "src"
    make_corpus(src)
    assert main(["corpus", "add", "tiny", str(src)]) == 0
    config = tmp_path / "config.yaml"
    config.write_text(
        "cleaned_corpus:\n  workers: 1\n  min_words: 25\ntokenizer:\n  vocab_size: 300\n"
    )
    assert main(["materialize", "--corpus", "tiny", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "materialized token_shards [tiny]" in out
    assert "check cleaned_corpus_expectations: passed" in out
    assert "tiny" in instance.get_materialized_partitions(AssetKey("token_shards"))
    cleaning = (data_root / "cleaned" / "tiny" / "cleaning.json").read_text()
    assert '"min_words": 25' in cleaning

    assert main(["corpus", "list"]) == 0
    listing = capsys.readouterr().out
    assert "tiny" in listing and "token_shards" in listing


def test_materialize_errors_are_clear(tmp_path: Path, data_root: Path, instance, capsys) -> None:
    assert main(["materialize", "--corpus", "nothing"]) == 2
    assert "not registered" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("not_an_asset:\n  x: 1\n")
    assert main(["materialize", "--corpus", "nothing", "--config", str(bad)]) == 2
    assert "unknown asset(s) ['not_an_asset']" in capsys.readouterr().err
    bad.write_text("a: [unclosed")
    assert main(["materialize", "--corpus", "nothing", "--config", str(bad)]) == 2
    assert "cannot read config" in capsys.readouterr().err


def test_builtin_extraction_reads_docstrings_and_skips_broken_files(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    (root / "pkg").mkdir(parents=True)
    (root / "site-packages").mkdir()
    (root / "mod.py").write_text(
        '"""Module doc."""\nclass A:\n    """Class doc."""\n    def f(self):\n'
        '        """Method doc."""\nasync def g():\n    """Coroutine doc."""\n'
    )
    (root / "pkg" / "__init__.py").write_text('"""Package doc."""\n')
    (root / "broken.py").write_text("def (:\n")
    (root / "site-packages" / "third.py").write_text('"""Not stdlib."""\n')
    records = list(iter_stdlib_docstrings(root))
    assert [(r["qualname"], r["text"]) for r in records] == [
        ("mod", "Module doc."),
        ("mod.A", "Class doc."),
        ("mod.A.f", "Method doc."),
        ("mod.g", "Coroutine doc."),
        ("pkg.__init__", "Package doc."),
    ]


def test_workspace_loads_with_dagster_cli(tmp_path: Path) -> None:
    """`workspace.yaml` is what `make ui` serves: the real dagster CLI must load it."""
    root = Path(__file__).resolve().parent.parent
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(root / "workspace.yaml")],
        cwd=root,
        capture_output=True,
        text=True,
        env={"DAGSTER_HOME": str(tmp_path), "PATH": str(dagster.parent), "HOME": str(tmp_path)},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_folder_sources_skip_symlinks_and_hidden_entries(
    tmp_path: Path, data_root: Path, instance, capsys
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("private key material")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("public text")
    (src / "link.txt").symlink_to(secret)
    (src / "sub" / "linked_dir").symlink_to(tmp_path)
    (src / ".git").mkdir()
    (src / ".git" / "config").write_text("[core]")
    assert main(["corpus", "add", "links", str(src)]) == 0
    placed = sorted(p.name for p in (data_root / "raw" / "links").rglob("*") if p.is_file())
    assert placed == ["a.txt"]
    assert "skipped symlink" in capsys.readouterr().err


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"only part of the file" * 10)

    def log_message(self, *args) -> None:
        pass


def test_truncated_download_is_refused_and_nothing_saved(data_root: Path, instance, capsys) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TruncatingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/big.txt"
        assert main(["corpus", "add", "cut", url]) == 2
        err = capsys.readouterr().err
        assert "download" in err and ("incomplete" in err or "failed" in err)
        assert not (data_root / "raw" / "cut").exists()  # nothing saved, no empty folder
        assert (
            main(["corpus", "add", "cut", f"http://127.0.0.1:{server.server_address[1]}/.."]) == 2
        )
        assert "safe file name" in capsys.readouterr().err
    finally:
        server.shutdown()


def test_list_survives_an_invalid_partition_key(data_root: Path, instance, capsys) -> None:
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["Bad Name", "good"])
    assert main(["corpus", "list"]) == 0
    out = capsys.readouterr().out
    assert "invalid corpus name" in out and "good" in out


def test_invalid_settings_name_the_file(tmp_path: Path, data_root: Path, instance, capsys) -> None:
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["c"])
    config = tmp_path / "c.yaml"
    config.write_text("cleaned_corpus:\n  min_char: 3\n")
    assert main(["materialize", "--corpus", "c", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}: invalid settings" in err and '"min_char"' in err
    config.write_text("tokenizer:\n  vocab_size: 10\n")
    assert main(["materialize", "--corpus", "c", "--config", str(config)]) == 2
    assert f"{config}: tokenizer: vocab_size: Input should be greater than or equal to 258" in (
        capsys.readouterr().err
    )
    assert main(["materialize", "--corpus", "c", "--job", "nope"]) == 2
    assert "unknown job 'nope'" in capsys.readouterr().err
    assert main(["corpus", "add", "python-stdlib-docs", "x.txt", "--builtin"]) == 2
    assert "--builtin takes no SOURCE" in capsys.readouterr().err
