"""Issue 25, findings 6, 7, 9–13: what a user who can write into the roots (or serve a download,
or open a web page in the user's browser) could do, each reproduced as the review did it.

6: a planted checkpoint `config.json` with absurd sizes; 7: a file of invalid UTF-8 bytes;
9: terminal escapes in file names, download reasons and a planted tokenizer; 10: markup in the
model card; 11: `doctor` in another PID namespace or without permission; 12: cross-site and
DNS-rebinding requests to the UI that `make ui` serves; 13: one 100 MB Parquet value.
"""

from __future__ import annotations

import ast
import codecs
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest
from dagster import DagsterRunStatus

from llm_pipeline.cli import main
from llm_pipeline.lm.store.checkpoint import (
    CONFIG_FILE,
    CheckpointError,
    load_model,
    save_checkpoint,
)
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline.text.read.decoding import CountingUtf8Decoder
from llm_pipeline_tests.crash_child import tiny_training_state
from llm_pipeline_tests.test_dead_runs import started_run
from llm_pipeline_tests.ui import free_port

REPO = Path(__file__).resolve().parent.parent
ESCAPES = "\x1b]0;pwned\x07\x1b[2J"


def _env() -> dict[str, str]:
    """This process's environment (the fixtures' roots and DAGSTER_HOME), this checkout first."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _checkpoint(tmp_path: Path, tokenizer_text: str = "{}") -> Path:
    model, optimizer, config = tiny_training_state(seed=0)
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text(tokenizer_text)
    return save_checkpoint(tmp_path / "run", model, optimizer, config, [], tokenizer)


def _set_model_field(run: Path, **fields: object) -> None:
    config = json.loads((run / CONFIG_FILE).read_text())
    config["model"].update(fields)
    (run / CONFIG_FILE).write_text(json.dumps(config))


_LOAD_PEAK = """
import resource, sys
from llm_pipeline.lm.store.checkpoint import CheckpointError, load_model
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_model(sys.argv[1])
    outcome = "loaded"
except CheckpointError as exc:
    outcome = str(exc)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(repr((outcome, (peak - base) // 1024)))
"""


def test_6_checkpoint_sizes_are_checked_against_the_weights_before_allocating(
    tmp_path: Path,
) -> None:
    run = _checkpoint(tmp_path)
    _set_model_field(run, vocab_size=10**12)  # was a raw RuntimeError from deep inside torch
    with pytest.raises(CheckpointError, match="config.json: invalid model settings"):
        load_model(run)
    # In bounds, but not what the weights hold: 16M x 16 floats (1 GiB) was allocated first.
    _set_model_field(run, vocab_size=16_000_000)
    out = subprocess.run([sys.executable, "-c", _LOAD_PEAK, str(run)], capture_output=True,
                         text=True, env=_env(), timeout=300, check=True).stdout  # fmt: skip
    outcome, peak_mib = ast.literal_eval(out.strip().splitlines()[-1])
    assert "does not match model.safetensors" in outcome and "[16000000, 16]" in outcome
    assert peak_mib < 200, f"{peak_mib} MiB allocated before the mismatch was seen"


def test_7_the_repair_decoder_reads_each_byte_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Linear, counted as bytes handed to the codec (the old decoder handed it the rest of the
    block after every invalid byte: n²/2 for n invalid bytes). Timing is benchmarks/decoding.py."""
    fed = [0]
    real = codecs.getincrementaldecoder

    def counting(encoding: str):
        cls = real(encoding)

        class Counting(cls):  # type: ignore[misc, valid-type]
            def decode(self, data: bytes, final: bool = False) -> str:
                fed[0] += len(data)
                return super().decode(data, final)

        return Counting

    monkeypatch.setattr(codecs, "getincrementaldecoder", counting)
    data = b"ok \xef\xbb\xbf" + b"\xff" * (64 << 10) + "caf\u00e9".encode() + b"\xe2\x82"
    decoder = CountingUtf8Decoder()
    text = decoder.decode(data[:1000]) + decoder.decode(data[1000:]) + decoder.decode(b"", True)
    assert text == data.decode("utf-8", "replace")
    assert (decoder.replaced_bytes, decoder.replacements) == ((64 << 10) + 2, (64 << 10) + 1)
    assert decoder.first_offset == 6
    assert fed[0] <= 2 * len(data), f"{fed[0]} bytes decoded for {len(data)}"


def _reason_server(reason: str) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500, reason)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_9_nothing_shown_to_a_terminal_carries_control_characters(
    tmp_path: Path, data_root: Path, instance, capsys
) -> None:
    # A download's HTTP reason phrase.
    server = _reason_server(f"Oops{ESCAPES}")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/a.txt"
        assert main(["corpus", "add", "web", url]) == 2
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    assert "download failed" in err and "\x1b" not in err and "\\x1b]0;pwned\\x07" in err
    # A corpus file name, in the run's log and its failure summary.
    src = tmp_path / "src"
    src.mkdir()
    (src / f"evil{ESCAPES}.txt").write_bytes(b"\0binary\0" * 100)
    (src / "good.txt").write_text("A short document, too short to train on.\n")
    assert main(["corpus", "add", "evil", str(src)]) == 0
    main(["materialize", "--corpus", "evil"])  # raw_corpus warns of the file by name
    shown = capsys.readouterr()
    assert "evil\\x1b]0;pwned" in shown.err
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", shown.out + shown.err)
    # A tokenizer planted next to a model: refused against the sha256 config.json records,
    # before `generate` could print what it decodes to.
    from llm_pipeline.lm.model.sampling import load_run

    run = _checkpoint(tmp_path)
    config = json.loads((run / CONFIG_FILE).read_text())
    config["tokenizer"] = {"eot_id": 0, "sha256": "0" * 64, "file": "tokenizer.json"}
    (run / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"tokenizer.json: sha256 .* differs"):
        load_run(run)


def test_10_the_model_card_escapes_what_it_quotes(tmp_path: Path) -> None:
    from llm_pipeline.lm.export.card import model_card
    from llm_pipeline.lm.export.llama import ExportSource
    from llm_pipeline.lm.settings import ModelConfig

    evil = "x\n# Fake heading\n![t](http://evil.example/p.png) <img src=x onerror=alert(1)>"
    config = {
        "data": {"corpus": "books", "raw_fingerprint": f"`{evil}"},
        "summary": {"run_id": evil, "device": evil, "stop_reason": evil},
        "training": {"seed": evil},
        "tokenizer": {"sha256": evil},
    }
    source = ExportSource(tmp_path, config, ModelConfig(mlp="swiglu"), {}, "{}", 0)
    card = model_card(source, "hf", {"docs_in": 1, "funnel": [{"step": evil}]}, {evil: 1.0})
    import markdown  # Python-Markdown (mkdocs's): the card as a hub would render it

    html = markdown.markdown(card)
    assert "<img" not in html and "<h1>Fake" not in html and 'href="http' not in html
    assert card.count("onerror=alert(1)") >= 8  # every quoted value is still shown, as text


def test_11_doctor_never_calls_a_run_it_cannot_see_dead(
    instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm_pipeline.automation.dead_runs import find_dead_runs, this_host

    # No permission to inspect the run's process: unknown, not dead.
    hidden = started_run(instance, "hidden", os.getpid(), host=this_host())

    def denied(self: psutil.Process) -> float:
        raise psutil.AccessDenied(self.pid)

    with monkeypatch.context() as patch:
        patch.setattr(psutil.Process, "create_time", denied)
        assert find_dead_runs(instance) == []
        assert main(["doctor"]) == 0
    assert instance.get_run_by_id(hidden.run_id).status == DagsterRunStatus.STARTED
    instance.delete_run(hidden.run_id)
    # `doctor` in another PID namespace, where this live run's pid means nothing.
    if shutil.which("unshare") is None:
        pytest.skip("unshare not available")
    live = started_run(instance, "live", os.getpid(), host=this_host())
    instance.add_run_tags(
        live.run_id, {"llm_pipeline/pid_namespace": os.readlink("/proc/self/ns/pid")}
    )
    command = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc",
               sys.executable, "-c", "import sys; from llm_pipeline.cli import main; "
               "sys.exit(main(['doctor']))"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
    if "Operation not permitted" in done.stderr and done.returncode:
        pytest.skip(f"no user namespaces here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert f"unknown run {live.run_id}" in done.stdout
    assert instance.get_run_by_id(live.run_id).status == DagsterRunStatus.STARTED


def _make_ui_command(port: int) -> list[str]:
    """The command `make ui` runs (its recipe's last line), on `port`."""
    recipe = re.search(r"^ui:.*?\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert recipe is not None
    line = recipe.group(1).strip().splitlines()[-1].strip()
    line = line.replace("$(BIN)", str(Path(sys.executable).parent)).replace("3000", str(port))
    return line.split()


def _request(url: str, query: str | None = None, get: str | None = None, **headers: str):
    if get is not None:
        url = f"{url}/graphql?{urllib.parse.urlencode({'query': get})}"
        request = urllib.request.Request(url, headers=headers)
    else:
        body = json.dumps({"query": query}).encode()
        headers = {"Content-Type": "application/json", **headers}
        request = urllib.request.Request(f"{url}/graphql", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def _add(key: str) -> str:
    return (
        "mutation { addDynamicPartition(repositorySelector: {repositoryLocationName: "
        '"llm_pipeline", repositoryName: "__repository__"}, partitionsDefName: "corpus", '
        f'partitionKey: "{key}") {{ __typename }} }}'
    )


def test_12_the_ui_refuses_cross_site_and_rebound_requests(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**_env(), "DAGSTER_HOME": str(home), "LLM_PIPELINE_DATA_DIR": str(tmp_path / "data")}
    log = open(tmp_path / "ui.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(_make_ui_command(port), cwd=REPO, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, (tmp_path / "ui.log").read_text()[-3000:]
            try:
                if _request(url, "{ version }")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the UI did not start"
            time.sleep(1)
        # A cross-site <img src> / link: a GET with a mutation (no Origin is sent).
        status, _ = _request(url, get=_add("via-get"))
        assert status == 405
        # A cross-site form or fetch POST: the browser sends the page's Origin.
        assert _request(url, _add("cross-site"), Origin="http://evil.example")[0] == 403
        # DNS rebinding: same origin to the browser, but the Host is the attacker's name.
        host = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
        assert _request(url, _add("rebound"), **host)[0] == 403
        assert _request(url, "{ version }", Host=f"evil.example:{port}")[0] == 403
        # The UI itself (same origin, loopback) still works, queries over GET included.
        assert _request(url, get="{ version }")[0] == 200
        status, body = _request(url, _add("from-the-ui"), Origin=url)
        assert status == 200, body
        from dagster import DagsterInstance

        with DagsterInstance.from_config(str(home)) as instance:
            keys = instance.get_dynamic_partitions(CORPUS_PARTITIONS_NAME)
        assert keys == ["from-the-ui"]
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
        log.close()


_STEP_PEAK = """
import sys
from pathlib import Path
import dagster  # the raw_corpus step's process has Dagster and the stage loaded
from llm_pipeline.text.settings import RawCorpusSettings
from llm_pipeline.text.stages import read_corpus
result = read_corpus(Path(sys.argv[1]), Path(sys.argv[2]), "big", RawCorpusSettings())
# VmHWM, not ru_maxrss: the latter keeps the peak of the (large) test process it forked from.
status = Path("/proc/self/status").read_text()
peak_kib = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
print(repr((result.stats.documents, result.stats.problems, peak_kib // 1024)))
"""


def test_13_one_100_mb_parquet_value_is_read_under_400_mb(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "raw"
    root.mkdir()
    texts = ["a good document " * 20, "a" * (100 << 20), "another one " * 20]
    pq.write_table(pa.table({"text": texts}), root / "big.parquet", compression="zstd",
                   row_group_size=1)  # fmt: skip
    del texts
    out = subprocess.run(
        [sys.executable, "-c", _STEP_PEAK, str(root), str(tmp_path / "documents")],
        capture_output=True, text=True, env=_env(), timeout=300, check=True,
    ).stdout  # fmt: skip
    documents, problems, peak_mib = ast.literal_eval(out.strip().splitlines()[-1])
    assert documents == 2 and len(problems) == 1 and "max_document_bytes" in problems[0]
    # 571 MiB before (Dagster and the stage loaded: ~120 MiB; `dagster asset materialize`'s whole
    # step process, ~420 MiB before it reads anything, went from 426 to 768 MiB on this file).
    assert peak_mib < 400, f"the raw_corpus stage peaked at {peak_mib} MiB"
