"""Drive the real UI `make ui` serves (webserver + daemon) and the system Chromium, for UI tests.

Used by `test_ui_e2e.py`, which also takes the docs' screenshot (`docs/asset-graph.png`: run
it with `LLM_PIPELINE_TEST_ARTIFACTS=some/folder` and copy `asset-graph.png`). Nothing here mocks
Dagster: the webserver, the daemon and the run workers are the processes `make ui` starts,
talked to over GraphQL exactly like the UI does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from llm_pipeline.paths import project_root

CHROMIUM_ENV = "LLM_PIPELINE_CHROMIUM"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCATION = "llm_pipeline"
REPOSITORY = "__repository__"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def chromium_path() -> str | None:
    """Debian's `chromium` (`make browser`, run by `.ci/run`), or `$LLM_PIPELINE_CHROMIUM`."""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DagsterDev:
    """A running `dagster dev`: its URL, process and log file."""

    url: str
    process: subprocess.Popen
    log: Path

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise RuntimeError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _wait_until_loaded(dev: DagsterDev, deadline: float) -> None:
    """Poll until the webserver answers and the code location has loaded its repository."""
    query = "{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { name } } } }"
    while time.monotonic() < deadline:
        if dev.process.poll() is not None:
            raise RuntimeError(f"dagster dev exited ({dev.process.returncode}):\n{dev.log_tail()}")
        try:
            data = dev.graphql(query, timeout=10)["repositoriesOrError"]
            if data.get("nodes"):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, RuntimeError):
            pass
        time.sleep(1)
    raise RuntimeError(f"dagster dev did not load the code location in time:\n{dev.log_tail()}")


@contextmanager
def dagster_dev(
    home: Path, env: dict[str, str], startup_timeout: float = 300
) -> Iterator[DagsterDev]:
    """Start `llm-pipeline ui` (what `make ui` runs) on a free loopback port; stop its process
    group after.

    The test starts the group, so it ends that group (by its id) and nothing else.
    """
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        settings.write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    log = home / "dagster-dev.log"
    # What `make ui` runs: Dagster's webserver and daemon, the webserver behind the loopback guard.
    cli = Path(sys.executable).with_name("llm-pipeline")
    command = [str(cli), "ui", "--host", "127.0.0.1", "-p", str(port)]
    full_env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        **env,
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            cwd=project_root(),
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: webserver, daemon, code server, runs
        )
    dev = DagsterDev(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        _wait_until_loaded(dev, time.monotonic() + startup_timeout)
        yield dev
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the group `dagster dev` leads (it shuts its children down), SIGKILL if it hangs."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        except ProcessLookupError:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):  # a straggling run worker
        os.killpg(process.pid, signal.SIGKILL)


ADD_PARTITION = """
mutation($selector: RepositorySelector!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: "corpus",
                      partitionKey: $key) {
    __typename
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""

LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}
"""

RUN_STATUS = """
query($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } ... on PythonError { message } }
}
"""


def dismiss_community_dialog(dev: DagsterDev) -> None:
    """Mark Dagster's one-time "join the community" dialog as seen, as its Skip button does.

    It opens a second after the first page load and would cover (and race with) what a test
    looks at; this is the same mutation the dialog sends, so nothing about the UI is faked.
    """
    dev.graphql("mutation { setNuxSeen }")


def add_partition(dev: DagsterDev, corpus: str) -> None:
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    result = dev.graphql(ADD_PARTITION, {"selector": selector, "key": corpus})
    outcome = result["addDynamicPartition"]
    if outcome["__typename"] != "AddDynamicPartitionSuccess":
        raise RuntimeError(f"addDynamicPartition: {outcome}")


def launch_partition_run(dev: DagsterDev, job: str, corpus: str, run_config: dict) -> str:
    """Launch a run of `job` for one corpus partition, as the launchpad does; return its id."""
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "jobName": job,
        },
        "runConfigData": run_config,
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": corpus}]},
    }
    outcome = dev.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    if outcome["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launchRun: {outcome}")
    return outcome["run"]["runId"]


def wait_for_run(dev: DagsterDev, run_id: str, timeout: float = 900) -> str:
    """Poll until the run ends; returns its final status (a hang guard, not a timing assert)."""
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        outcome = dev.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]
        status = outcome.get("status", outcome["__typename"])
        if status in TERMINAL:
            return status
        if dev.process.poll() is not None:
            raise RuntimeError(f"dagster dev exited during the run:\n{dev.log_tail()}")
        time.sleep(2)
    raise RuntimeError(f"run {run_id} still {status} after {timeout:.0f} s:\n{dev.log_tail()}")


BACKFILL = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status runs(limit: 20) { runId status } }
    ... on PythonError { message }
  }
}
"""
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def wait_for_backfill(dev: DagsterDev, backfill_id: str, timeout: float = 900) -> dict:
    """Poll until the daemon has finished a backfill; returns its status and runs."""
    deadline = time.monotonic() + timeout
    outcome: dict = {}
    while time.monotonic() < deadline:
        outcome = dev.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        if outcome.get("status") in BACKFILL_DONE:
            return outcome
        if dev.process.poll() is not None:
            raise RuntimeError(f"dagster dev exited during the backfill:\n{dev.log_tail()}")
        time.sleep(3)
    raise RuntimeError(f"backfill {backfill_id} not done after {timeout:.0f} s: {outcome}")


@contextmanager
def browser_page(width: int = 1600, height: int = 1000):
    """A page in headless system Chromium driven by Playwright (which downloads nothing here)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError(
            "no Chromium found: install it with `make browser` (apt-get install chromium) "
            f"or point {CHROMIUM_ENV} at a Chromium binary"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()
