"""`corpus add` downloads and destinations against a hostile local server (127.0.0.1).

Each failure is one clear line, no traceback, nothing saved: `Content-Length: abc`, an endless
body without a length, a redirect to another host (followed only with `--follow-redirects`), a
`%00` in the URL, and a symlinked subfolder of `data/raw/<c>/` as the destination.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

SECRET = "db_password=hunter2"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    file = tmp_path / "outside" / "victim.txt"
    file.parent.mkdir()
    file.write_text(SECRET + "\n")
    return file


class _HostileHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/bad-length.txt":
            self.send_response(200)
            self.send_header("Content-Length", "abc")
            self.end_headers()
            self.wfile.write(b"text")
        elif self.path == "/endless.txt":
            self.send_response(200)
            self.end_headers()  # no Content-Length: HTTP/1.0, body until close
            try:
                while True:
                    self.wfile.write(b"endless text " * 4096)
            except OSError:
                pass
        elif self.path == "/moved.txt":
            self.send_response(302)
            port = self.server.server_address[1]
            self.send_header("Location", f"http://localhost:{port}/target.txt")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/target.txt":
            body = b"followed text\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hostile_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HostileHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("path", "flags", "expected"),
    [
        ("/bad-length.txt", [], "the server sent an invalid Content-Length 'abc'"),
        ("/endless.txt", ["--max-download-mb", "1"], "download stopped: larger than the cap"),
        ("/moved.txt", [], "redirected to another host, localhost:"),
        ("/a%00b.txt", [], "cannot take a safe file name from the URL"),
    ],
)
def test_hostile_downloads_fail_with_one_clear_line(
    hostile_server: str, data_root: Path, instance, capsys, path: str, flags: list, expected: str
) -> None:
    from llm_pipeline.cli import main

    assert main(["corpus", "add", "web", f"{hostile_server}{path}", *flags]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (data_root / "raw" / "web").exists()  # nothing saved, no empty folder left


def test_a_cross_host_redirect_is_followed_when_asked(
    hostile_server: str, data_root: Path, instance, capsys
) -> None:
    from llm_pipeline.cli import main

    url = f"{hostile_server}/moved.txt"
    assert main(["corpus", "add", "web", url, "--follow-redirects"]) == 0
    assert (data_root / "raw" / "web" / "moved.txt").read_text() == "followed text\n"


def test_corpus_add_never_writes_through_a_symlinked_subfolder(
    tmp_path: Path, data_root: Path, instance, capsys, victim
) -> None:
    from llm_pipeline.cli import main

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "victim.txt").write_text("replacement\n")
    corpus = data_root / "raw" / "c"
    corpus.mkdir(parents=True)
    (corpus / "sub").symlink_to(victim.parent, target_is_directory=True)
    assert main(["corpus", "add", "c", str(src)]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "sub: is a symbolic link; refusing to write through it" in lines[0]
    assert victim.read_text() == SECRET + "\n"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.txt"]
