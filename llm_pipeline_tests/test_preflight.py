"""Refuse before training: what depends on the machine and the files is checked up front."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from dagster import DagsterEventType

from llm_pipeline.asset_graph import stage_settings
from llm_pipeline.cli import main
from llm_pipeline.definitions import defs
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline.preflight import PreflightError, check_machine
from llm_pipeline.run_config import load_run_config
from llm_pipeline.stage_assets import ASSETS
from llm_pipeline_tests.test_model_pipeline import make_structured_corpus
from llm_pipeline_tests.test_pipeline import FAST


def test_missing_eval_file_is_refused_with_where_to_put_it(data_root: Path) -> None:
    with pytest.raises(PreflightError) as exc:
        check_machine({"evaluation_report": {"eval_files": ["held/out.txt"]}}, "my.yaml")
    message = str(exc.value)
    assert message.startswith("my.yaml: evaluation_report.eval_files 'held/out.txt': ")
    assert f"{data_root / 'held' / 'out.txt'} does not exist; put the file there" in message


def test_eval_file_outside_the_data_root_or_not_a_file_is_refused(data_root: Path) -> None:
    with pytest.raises(PreflightError, match="outside .*copy the file under"):
        check_machine({"evaluation_report": {"eval_files": ["../secret.txt"]}}, "my.yaml")
    (data_root / "folder").mkdir()
    with pytest.raises(PreflightError, match="is not a regular file"):
        check_machine({"evaluation_report": {"eval_files": ["folder"]}}, "my.yaml")
    (data_root / "ok.txt").write_text("held-out text")
    check_machine({"evaluation_report": {"eval_files": ["ok.txt"]}}, "my.yaml")


def test_unavailable_device_and_silent_tracking_server_are_refused(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(PreflightError, match="trained_model.device: 'cuda' but no CUDA"):
            check_machine({"trained_model": {"device": "cuda"}}, "my.yaml")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(PreflightError, match="MLFLOW_TRACKING_URI: http://127.0.0.1:9 does not"):
        check_machine({}, "my.yaml")


def test_cli_refuses_a_missing_eval_file_in_seconds(
    data_root: Path, instance, tmp_path: Path, capsys
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"evaluation_report": {"eval_files": ["missing.txt"]}}))
    with pytest.raises(PreflightError):
        load_run_config(str(config), stage_settings(ASSETS))
    started = time.monotonic()
    assert main(["run", "--corpus", "anything", "--config", str(config)]) == 2
    assert time.monotonic() - started < 10
    assert "missing.txt" in capsys.readouterr().err
    assert not instance.get_runs()  # nothing was launched


def test_launchpad_run_with_a_missing_eval_file_fails_before_training(
    data_root: Path, instance
) -> None:
    make_structured_corpus(data_root / "raw" / "pad", n_docs=20)
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["pad"])
    job = defs.resolve_job_def("corpus_pipeline_job")
    ops = {**FAST, "evaluation_report": {"config": {"eval_files": ["missing.txt"]}}}
    result = job.execute_in_process(
        instance=instance, partition_key="pad", run_config={"ops": ops}, raise_on_error=False
    )
    assert not result.success
    failed = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert [e.step_key for e in failed] == ["raw_corpus"]
    message = failed[0].event_specific_data.user_failure_data.description
    assert "evaluation_report.eval_files 'missing.txt'" in message
    assert "put the file there" in message
    started = [e.step_key for e in result.all_events if e.event_type_value == "STEP_START"]
    assert "trained_model" not in started
