"""The real UI, end to end: `dagster dev` (webserver + daemon), a partitioned run launched over
GraphQL, the evaluation report with its loss plot rendered in headless Chromium, and a backfill
submitted by `llm-pipeline backfill` that the daemon then runs.

Needs Debian's `chromium` (`make browser`; `.ci/run` installs it). Without it the test fails, so
CI cannot pass without the UI having been checked; set `LLM_PIPELINE_SKIP_UI_TEST=1` to skip it
deliberately on a machine that has no browser. Screenshots go to `$LLM_PIPELINE_TEST_ARTIFACTS`
(default: the test's temporary folder) and their paths are printed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llm_pipeline.lm.store.folders import LATEST, read_pointer
from llm_pipeline_tests.test_model_pipeline import REPORT, TINY_MODEL, make_structured_corpus
from llm_pipeline_tests.test_pipeline import FAST
from llm_pipeline_tests.ui import (
    add_partition,
    browser_page,
    chromium_path,
    dagster_dev,
    dismiss_community_dialog,
    launch_partition_run,
    wait_for_backfill,
    wait_for_run,
)

SKIP_ENV = "LLM_PIPELINE_SKIP_UI_TEST"
ARTIFACTS_ENV = "LLM_PIPELINE_TEST_ARTIFACTS"
# The global lineage view with both asset groups expanded: the whole graph in one picture.
GRAPH_PATH = (
    "/asset-groups/?expanded=global%40global%3Acorpus_data%2Cglobal%40global%3Alanguage_model"
)

pytestmark = pytest.mark.skipif(
    os.environ.get(SKIP_ENV) == "1", reason=f"{SKIP_ENV}=1: UI test skipped on purpose"
)


def test_ui_runs_the_graph_and_renders_the_report_with_its_loss_plot(tmp_path: Path) -> None:
    assert chromium_path(), "Chromium is missing: run `make browser` (apt-get install chromium)"
    artifacts = Path(os.environ.get(ARTIFACTS_ENV) or tmp_path / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    data, models = tmp_path / "data", tmp_path / "models"
    make_structured_corpus(data / "raw" / "tiny")
    env = {"LLM_PIPELINE_DATA_DIR": str(data), "LLM_PIPELINE_MODELS_DIR": str(models)}
    run_config = {
        "ops": {
            **FAST,
            "trained_model": {"config": TINY_MODEL},
            "evaluation_report": {"config": REPORT},
        }
    }
    with dagster_dev(tmp_path / "dagster_home", env) as dev:
        add_partition(dev, "tiny")
        run_id = launch_partition_run(dev, "corpus_pipeline_job", "tiny", run_config)
        # The run is queued; only the daemon that `dagster dev` started can launch it.
        assert wait_for_run(dev, run_id) == "SUCCESS", dev.log_tail()
        assert (models / "tiny" / run_id / "report.html").is_file()

        dismiss_community_dialog(dev)
        with browser_page() as page:
            page.goto(f"{dev.url}/assets/evaluation_report?partition=tiny")
            show = page.get_by_text("[Show Markdown]").first
            show.wait_for(timeout=120_000)
            assert page.get_by_text("bits_per_byte", exact=True).first.is_visible()
            show.click()
            heading = page.get_by_role("heading", name=f"tiny — run {run_id}")
            report = page.get_by_role("dialog").filter(has=heading)
            heading.wait_for(timeout=30_000)
            assert page.get_by_role("dialog").count() == 1  # nothing else covers the report
            text = report.inner_text()
            for section in ("Headline metrics", "Champion and challenger", "Plots", "Samples"):
                assert section in text
            assert "first model for this corpus" in text
            plot = report.locator("img[alt='loss']")
            plot.scroll_into_view_if_needed()
            assert plot.get_attribute("src").startswith("data:image/png;base64,")
            # Decoded and laid out by the browser, not just present in the markup.
            loaded, width, height = plot.evaluate(
                "img => [img.complete, img.naturalWidth, img.naturalHeight]"
            )
            assert loaded and width > 100 and height > 100
            assert plot.bounding_box()["width"] > 100
            report_shot = artifacts / "evaluation_report.png"
            page.screenshot(path=str(report_shot))

            page.keyboard.press("Escape")
            page.set_viewport_size({"width": 1800, "height": 720})  # wide: the graph is a row
            page.goto(dev.url + GRAPH_PATH)
            node = page.get_by_text("evaluation_report", exact=True).last
            node.wait_for(timeout=120_000)
            for asset in ("raw_corpus", "cleaned_corpus", "token_shards", "trained_model"):
                assert page.get_by_text(asset, exact=True).last.is_visible()
            page.wait_for_timeout(1500)  # let the graph finish its zoom-to-fit animation
            graph_shot = artifacts / "asset-graph.png"
            page.screenshot(path=str(graph_shot))

        # The CLI's backfill lands in the same instance and the daemon runs it: retrain + report.
        settings = tmp_path / "tiny.yaml"
        settings.write_text(
            yaml.safe_dump({"trained_model": TINY_MODEL, "evaluation_report": REPORT})
        )
        cli = Path(sys.executable).with_name("llm-pipeline")
        command = [str(cli), "backfill", "--corpus", "tiny", "--from", "trained_model"]
        submitted = subprocess.run(
            [*command, "--config", str(settings)],
            env={**os.environ, **env, "DAGSTER_HOME": str(tmp_path / "dagster_home")},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert submitted.returncode == 0, submitted.stderr
        backfill_id = re.search(r"^backfill (\S+):", submitted.stdout, re.M).group(1)
        done = wait_for_backfill(dev, backfill_id)
        assert done["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), (done, dev.log_tail())
        [backfill_run] = done["runs"]
        assert backfill_run["status"] == "SUCCESS"
        assert read_pointer("tiny", LATEST, models) == backfill_run["runId"] != run_id
        assert (models / "tiny" / backfill_run["runId"] / "report.html").is_file()
    print(f"screenshots: {report_shot} {graph_shot}")
    assert report_shot.stat().st_size > 10_000 and graph_shot.stat().st_size > 10_000
