"""The docs site: it builds strictly, its reference is complete, and its first page works.

The configuration reference is generated from the settings, so the build is checked against
`STAGES` itself rather than a list written here; the getting-started page's commands and Python
blocks are run as a reader would run them, in a fresh folder with its own data, models and
Dagster instance, so a renamed command, flag or helper fails here before it fails a reader.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from llm_pipeline.asset_graph import stage_settings
from llm_pipeline.lm.settings import PRESETS
from llm_pipeline.stage_assets import ASSETS
from llm_pipeline.text.filters.profiles import PROFILE_SETTINGS

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
# The venv's own scripts (mkdocs, llm-pipeline): not resolved, a venv's python is a symlink.
BIN = Path(sys.executable).parent
README_MAX_LINES = 250
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


STAGES = stage_settings(ASSETS)


def checkout_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that imports this checkout's package, offline."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["PATH"] = os.pathsep.join((str(BIN), env.get("PATH", "")))
    env.update(
        GX_ANALYTICS_ENABLED="false",
        DAGSTER_DISABLE_TELEMETRY="true",
        HF_HUB_OFFLINE="1",
        **extra,
    )
    return env


def run_bounded(
    command: list[str], *, cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run `command` in its own process group with a time limit; whatever it started (Dagster
    step processes, the trainer) is killed with it, so a hung block cannot outlive the test."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        output = process.communicate()[0] + f"\n[killed: still running after {timeout} s]"
    finally:
        # Also after a normal exit: nothing the block started may stay behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return subprocess.CompletedProcess(command, process.returncode, output)


def fenced_blocks(markdown: str) -> list[tuple[str, str]]:
    """`(language, code)` of every fenced block, in page order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(markdown)]


def test_site_builds_strictly_with_every_setting(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = run_bounded(
        [str(BIN / "mkdocs"), "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(site)],
        cwd=REPO,
        env=checkout_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout
    page = (site / "configuration" / "index.html").read_text()
    # Each stage's section (from its heading to the next stage's) lists every one of its keys.
    starts = [page.index(f'id="{name}"') for name in STAGES]
    ends = [*starts[1:], len(page)]
    for (name, stage), start, end in zip(STAGES.items(), starts, ends):
        section = page[start:end]
        missing = [s.name for s in stage.specs if f"<code>{s.name}</code>" not in section]
        assert not missing, f"{name}: not in the built reference: {missing}"
    for name in (*PRESETS, *PROFILE_SETTINGS):
        assert f"<code>{name}</code>" in page
    # The marker was replaced, not published.
    assert "settings-reference" not in page


def test_readme_is_short_and_links_to_pages_that_exist() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    links = re.findall(r"\]\((docs/[^)#\s]+)", readme)
    assert links, "the README links to no docs page"
    assert [link for link in links if not (REPO / link).is_file()] == []


def test_getting_started_blocks_run(tmp_path: Path) -> None:
    """Every ```bash and ```python block of the page, in order, in a fresh project folder."""
    blocks = [
        (language, code)
        for language, code in fenced_blocks((DOCS / "getting-started.md").read_text())
        if language in ("bash", "python")
    ]
    assert {language for language, _ in blocks} == {"bash", "python"}
    env = checkout_env(
        LLM_PIPELINE_DATA_DIR=str(tmp_path / "data"),
        LLM_PIPELINE_MODELS_DIR=str(tmp_path / "models"),
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
    )
    for language, code in blocks:
        command = (
            ["bash", "-euo", "pipefail", "-c", code]
            if language == "bash"
            else [sys.executable, "-c", code]
        )
        result = run_bounded(command, cwd=tmp_path, env=env, timeout=420)
        assert result.returncode == 0, f"```{language}\n{code}```\n{result.stdout}"
    # The page's run trained and promoted a model, in the folders the test gave it.
    assert (tmp_path / "models" / "python-stdlib-docs" / "current").exists()
