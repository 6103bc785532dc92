"""The project is a `dg` project: Dagster's recommended CLI loads the same definitions.

`make ui` runs `dg dev`; `dg check defs` and `dg list defs` work from the project root, and
`workspace.yaml` (for `dagster dev -w workspace.yaml`) names the same module and location.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from llm_pipeline_tests.ui import free_port

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
ASSETS = {
    "raw_corpus",
    "cleaned_corpus",
    "tokenizer",
    "token_shards",
    "trained_model",
    "evaluation_report",
    "exported_model",
}
JOBS = {"corpus_data_job", "corpus_pipeline_job", "corpus_export_job"}


def run_dg(args: list[str], home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `dg` from the project root in a fresh DAGSTER_HOME; its whole process group
    is killed afterwards, so no code server outlives the test."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dg = Path(sys.executable).parent / "dg"
    env = {
        "DAGSTER_HOME": str(home),
        "HOME": str(home),
        "PATH": f"{dg.parent}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "PYTHONPATH": str(REPO),
        "DAGSTER_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }
    process = subprocess.Popen(
        [str(dg), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group may be gone already
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_dg_check_defs_loads_the_definitions(tmp_path: Path) -> None:
    result = run_dg(["check", "defs"], tmp_path / "home")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_dg_list_defs_lists_the_assets_and_jobs(tmp_path: Path) -> None:
    result = run_dg(["list", "defs", "--json"], tmp_path / "home")
    assert result.returncode == 0, result.stdout + result.stderr
    listed = json.loads(result.stdout)
    assert {asset["asset_key"] for asset in listed["assets"]} == ASSETS
    assert {job["name"] for job in listed["jobs"]} == JOBS
    assert {s["name"] for s in listed["schedules"]} == {"retrain_schedule"}
    assert {s["name"] for s in listed["sensors"]} == {"new_corpus_sensor"}
    # The same table a person reads, without --json.
    table = run_dg(["list", "defs"], tmp_path / "home")
    assert table.returncode == 0, table.stdout + table.stderr
    for name in [*sorted(ASSETS), *sorted(JOBS)]:
        assert name in table.stdout, name


def listening_addresses(port: int) -> set[str]:
    """The local addresses of sockets listening on `port` (Linux /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux socket tables")
def test_make_ui_command_serves_on_loopback_only(tmp_path: Path) -> None:
    """The command `make ui` runs, `dg dev -h 127.0.0.1 -p PORT`, serves the UI on 127.0.0.1 and
    on no other interface."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    dg = Path(sys.executable).parent / "dg"
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    with open(tmp_path / "dg-dev.log", "wb") as log:
        process = subprocess.Popen(
            [str(dg), "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except OSError:
                time.sleep(1)
        else:
            log_tail = (tmp_path / "dg-dev.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"dg dev did not serve on 127.0.0.1:{port}:\n{log_tail}")
        # 127.0.0.1 as /proc writes it (little-endian hex); never every interface (v4 or v6).
        assert listening_addresses(port) == {"0100007F"}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)  # dg dev shuts its children down on Ctrl-C
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_dg_and_workspace_yaml_load_the_same_code_location() -> None:
    """`dg dev` and `dagster dev -w workspace.yaml` show one location, so runs, schedules and
    sensor state started from either UI belong to the same `llm_pipeline` location."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]
    assert project["directory_type"] == "project"
    (entry,) = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    module = entry["python_module"]
    assert project["project"]["code_location_target_module"] == module["module_name"]
    assert project["project"]["code_location_name"] == module["location_name"]
