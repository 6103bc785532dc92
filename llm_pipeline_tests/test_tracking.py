"""MLflow tracking and the model registry, against a real local sqlite store (no mock).

Three trainings of one corpus and an export: each training is an MLflow run with its settings,
a metric point per logged step and its bits per byte, and a version of `llm-pipeline-<corpus>`;
`champion` follows `models/<corpus>/current` (and the champion's export), and a model that is
not promoted leaves it where it was. With tracking off no process of a run imports mlflow; an
unreachable store fails the first step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from llm_pipeline.lm.store.checkpoint import read_config, read_metrics
from llm_pipeline.lm.store.folders import CURRENT, read_pointer
from llm_pipeline.lm.tracking.training_runs import (
    CHAMPION,
    CORPUS_TAG,
    FINGERPRINT_TAG,
    FORMAT_TAG,
    RUN_ID_TAG,
    TRACKING_URI_ENV,
    TrackingError,
    check_reachable,
    experiment_name,
    registered_model_name,
)
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline_tests.test_model_pipeline import REPORT, TINY_MODEL, make_structured_corpus
from llm_pipeline_tests.test_model_pipeline import run_graph as run_whole_graph
from llm_pipeline_tests.test_pipeline import failures

WORSE = {**TINY_MODEL, "max_steps": 30}  # passes the unigram check, loses to 80 steps
BETTER = {**TINY_MODEL, "mlp": "swiglu"}  # 80 steps, and a Llama block: it can be exported


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    folder = tmp_path / "mlflow"
    folder.mkdir()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    monkeypatch.setenv(TRACKING_URI_ENV, uri)
    return uri


def run_graph(instance, model: dict, data_root: Path):
    heldout = data_root / "heldout.txt"  # eval files live under the data root
    heldout.write_text("The pipeline cleans documents and trains a tokenizer.\n")
    result = run_whole_graph(instance, "tiny", model, {**REPORT, "eval_files": [str(heldout)]})
    assert result.success, failures(result)
    return result


def test_runs_versions_and_the_champion_alias(data_root: Path, instance, store: str) -> None:
    from mlflow import MlflowClient

    make_structured_corpus(data_root / "raw" / "tiny")
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["tiny"])
    first = run_graph(instance, WORSE, data_root)
    second = run_graph(instance, BETTER, data_root)  # promoted over the first
    models = data_root.parent / "models" / "tiny"
    assert read_pointer("tiny", CURRENT) == second.run_id

    client = MlflowClient(tracking_uri=store, registry_uri=store)
    experiment = client.get_experiment_by_name(experiment_name("tiny"))
    assert experiment is not None
    name = registered_model_name("tiny")
    for result, steps in ((first, 30), (second, 80)):
        [run] = client.search_runs(
            [experiment.experiment_id], f"tags.`{RUN_ID_TAG}` = '{result.run_id}'"
        )
        assert run.info.run_name == result.run_id and run.info.status == "FINISHED"
        config = read_config(models / result.run_id)
        assert run.data.tags[CORPUS_TAG] == "tiny"
        assert run.data.tags[FINGERPRINT_TAG] == config.data.raw_fingerprint
        assert run.data.params["max_steps"] == str(steps)
        assert run.data.params["n_embd"] == "32" and run.data.params["cleaning_profile"]
        assert run.data.metrics["bits_per_byte"] == pytest.approx(config.summary.val_bits_per_byte)
        assert {"mfu", "eval_bpb_heldout.txt", "challenger_bits_per_byte"} <= set(run.data.metrics)
        history = read_metrics(models / result.run_id)
        for metric, key in (("train_loss", "train_loss"), ("val_loss", "val_loss")):
            points = client.get_metric_history(run.info.run_id, metric)
            assert [p.step for p in points] == [r["step"] for r in history if r[key] is not None]
        assert len(client.get_metric_history(run.info.run_id, "lr")) == len(history)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "tokenizer.json", "model", "report"} <= artifacts
        report = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
        assert {"report/report.md", "report/report.html", "report/loss.png"} <= report
        model = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
        assert "model/model.safetensors" in model and "model/optimizer.pt" not in model
        trained = result.asset_materializations_for_node("trained_model")[0].metadata
        assert trained["mlflow_run_id"].value == run.info.run_id

    versions = client.search_model_versions(f"name = '{name}'")
    assert sorted(v.tags[RUN_ID_TAG] for v in versions) == sorted([first.run_id, second.run_id])
    assert client.get_model_version_by_alias(name, CHAMPION).tags[RUN_ID_TAG] == second.run_id

    import mlflow

    from llm_pipeline.lm.store.checkpoint import load_model

    # What a serving tool does: fetch the champion by its registry URI and load it.
    mlflow.set_tracking_uri(store)
    served = data_root.parent / "served"
    folder = mlflow.artifacts.download_artifacts(f"models:/{name}@{CHAMPION}", dst_path=str(served))
    assert load_model(Path(folder)).config.n_embd == 32

    # Exporting the champion registers its Hugging Face folder, and the alias follows it.
    exported = export_graph(instance)
    assert exported.success, failures(exported)
    champion = client.get_model_version_by_alias(name, CHAMPION)
    assert champion.tags[RUN_ID_TAG] == second.run_id and champion.tags[FORMAT_TAG] == "hf"
    folder = mlflow.artifacts.download_artifacts(
        f"models:/{name}@{CHAMPION}", dst_path=str(served / "hf")
    )
    hf_config = json.loads((Path(folder) / "config.json").read_text())
    assert hf_config["architectures"] == ["LlamaForCausalLM"]
    assert (Path(folder) / "model.safetensors").is_file()

    third = run_graph(instance, WORSE, data_root)  # not promoted: the alias stays
    report = third.asset_materializations_for_node("evaluation_report")[0].metadata
    assert report["promoted"].value is False
    assert read_pointer("tiny", CURRENT) == second.run_id
    assert len(client.search_model_versions(f"name = '{name}'")) == 4
    assert client.get_model_version_by_alias(name, CHAMPION).version == champion.version


def export_graph(instance):
    from llm_pipeline.definitions import defs

    return defs.resolve_job_def("corpus_export_job").execute_in_process(
        instance=instance,
        partition_key="tiny",
        run_config={"ops": {"exported_model": {"config": {"formats": ["hf"]}}}},
        raise_on_error=False,
    )


SITECUSTOMIZE = """
import atexit, json, os, sys

def _record():
    out = os.path.join(os.environ["MLFLOW_MARKERS"], f"{os.getpid()}.json")
    with open(out, "w") as fh:
        json.dump({"argv": sys.argv, "mlflow": any(m.split(".")[0] == "mlflow"
                   for m in sys.modules)}, fh)

atexit.register(_record)
"""

GRAPH_SCRIPT = """
from dagster import DagsterInstance
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline_tests.test_model_pipeline import REPORT, TINY_MODEL, run_graph

with DagsterInstance.get() as instance:
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["tiny"])
    model = {**TINY_MODEL, "max_steps": 30}
    assert run_graph(instance, "tiny", model, REPORT).success
"""


def test_tracking_off_never_imports_mlflow(
    tmp_path: Path, data_root: Path, instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole graph in a fresh process, with the trainer as its child: every process
    records at exit whether mlflow was ever imported."""
    monkeypatch.delenv(TRACKING_URI_ENV, raising=False)
    make_structured_corpus(data_root / "raw" / "tiny")
    hooks, markers = tmp_path / "hooks", tmp_path / "markers"
    hooks.mkdir()
    markers.mkdir()
    (hooks / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "MLFLOW_MARKERS": str(markers),
        "PYTHONPATH": os.pathsep.join([str(hooks), str(root), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", GRAPH_SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(f.read_text()) for f in markers.glob("*.json")]
    assert any("trainer_main" in " ".join(r["argv"]) for r in records), records
    assert len(records) >= 2 and not [r for r in records if r["mlflow"]], records


def test_unreachable_store_fails_the_first_step(
    data_root: Path, instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TRACKING_URI_ENV, "http://127.0.0.1:9")  # the discard port: refused
    make_structured_corpus(data_root / "raw" / "tiny")
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, ["tiny"])
    result = run_whole_graph(instance, "tiny", TINY_MODEL, REPORT)
    assert not result.success
    [message] = failures(result)
    assert "MLflow tracking store http://127.0.0.1:9 (MLFLOW_TRACKING_URI) cannot be reached" in (
        message
    )
    steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
    assert steps == {"raw_corpus"}
    assert not (data_root / "documents" / "tiny").exists()


def test_check_reachable_names_the_store(tmp_path: Path) -> None:
    check_reachable(f"sqlite:///{tmp_path / 'ok.db'}")
    check_reachable(str(tmp_path))
    with pytest.raises(TrackingError, match=r"cannot be reached: no folder .*missing"):
        check_reachable(f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}")
    with pytest.raises(TrackingError, match="unset MLFLOW_TRACKING_URI"):
        check_reachable("http://127.0.0.1:9")


TRACKER_SCRIPT = """
import sys
from pathlib import Path
from types import SimpleNamespace as NS

from llm_pipeline.lm.tracking.training_runs import job_tracking, start_tracking

settings = NS(to_dict=lambda: {"n_layer": 1, "max_steps": 4})
job = NS(tracking=job_tracking("docs"), settings=settings,
         run_id=sys.argv[1], corpus="unit", data=NS(raw_fingerprint="f00"))
tracker = start_tracking(job, print)
rows = [{"step": s, "train_loss": 2.0 - s / 10, "val_loss": None, "lr": 1e-3,
         "tokens_per_s": 100.0} for s in range(4)]
tracker.log_row(rows[2])  # steps 0, 1 came before a resume, 3 was missed: logged at the end
if sys.argv[2] == "kill":  # killed outright (SIGKILL, the OOM killer): nothing runs after
    import os, signal
    os.kill(os.getpid(), signal.SIGKILL)
if sys.argv[2] == "finish":
    summary = NS(run_id=sys.argv[1], val_bits_per_byte=2.5, unigram_bits_per_byte=3.0,
                 val_loss=1.7, parameters=10, tokens_seen=64, training_seconds=1.0, mfu=None,
                 steps=4, stop_reason="max_steps")
    folder = Path(sys.argv[3])
    print(tracker.finish(summary, folder, rows))
sys.exit(3)  # ends like a crashed trainer: without finish, the run must not stay RUNNING
"""


def test_tracker_logs_missed_steps_at_the_end_and_a_dead_trainer_is_failed(
    tmp_path: Path, store: str
) -> None:
    from mlflow import MlflowClient

    folder = tmp_path / "checkpoint"
    folder.mkdir()
    for name in ("model.safetensors", "config.json", "tokenizer.json", "optimizer.pt"):
        (folder / name).write_text("{}")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    for run_id, mode in (("finished-run", "finish"), ("crashed-run", "crash")):
        done = subprocess.run(
            [sys.executable, "-c", TRACKER_SCRIPT, run_id, mode, str(folder)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 3, done.stderr[-2000:]
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    experiment = client.get_experiment_by_name(experiment_name("unit"))
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    finished, crashed = runs["finished-run"], runs["crashed-run"]
    assert finished.info.status == "FINISHED" and crashed.info.status == "FAILED"
    points = client.get_metric_history(finished.info.run_id, "train_loss")
    assert sorted(p.step for p in points) == [0, 1, 2, 3]
    assert finished.data.params["cleaning_profile"] == "docs"
    model = {a.path for a in client.list_artifacts(finished.info.run_id, "model")}
    assert model == {"model/model.safetensors", "model/config.json", "model/tokenizer.json"}
    [version] = client.search_model_versions(f"name = '{registered_model_name('unit')}'")
    assert version.tags[RUN_ID_TAG] == "finished-run" and version.tags[FORMAT_TAG] == "checkpoint"


def test_a_killed_trainers_mlflow_run_is_ended_with_its_dead_run(
    tmp_path: Path, store: str, instance
) -> None:
    from dagster import DagsterEvent, DagsterEventType, EventLogEntry
    from mlflow import MlflowClient

    from llm_pipeline.automation.dead_runs import TRAINING_STEP, clear_dead_runs
    from llm_pipeline.lm.tracking.records import ENDED_BY_TAG, end_unfinished_run
    from llm_pipeline_tests.test_dead_runs import dead_pid, started_run

    # Two whole runs gone: one had started training, the other never got past the data stages
    # (an MLflow run under its id is left alone: it cannot be a trainer's).
    trained, data_only = (started_run(instance, "unit", dead_pid()) for _ in range(2))
    event = DagsterEvent(DagsterEventType.STEP_START.value, job_name=trained.job_name,
                         step_key=TRAINING_STEP, pid=dead_pid())  # fmt: skip
    instance.store_event(
        EventLogEntry(error_info=None, level="DEBUG", user_message="", run_id=trained.run_id,
                      timestamp=time.time(), dagster_event=event, job_name=trained.job_name)
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for run in (trained, data_only):
        killed = subprocess.run(
            [sys.executable, "-c", TRACKER_SCRIPT, run.run_id, "kill", str(tmp_path)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert killed.returncode == -9, killed.stderr[-2000:]
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    experiment = client.get_experiment_by_name(experiment_name("unit"))
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert {r.info.status for r in runs.values()} == {"RUNNING"}  # what a SIGKILL leaves

    lines: list[str] = []
    cleared = {d.run_id for d in clear_dead_runs(instance, log=lines.append)}
    assert cleared == {trained.run_id, data_only.run_id}
    ended = client.get_run(runs[trained.run_id].info.run_id)
    assert ended.info.status == "KILLED"
    assert "run worker gone" in ended.data.tags[ENDED_BY_TAG]
    assert any("marked KILLED" in line for line in lines)
    assert client.get_run(runs[data_only.run_id].info.run_id).info.status == "RUNNING"
    # A run that is no longer RUNNING is left as it is.
    assert end_unfinished_run("unit", trained.run_id, "again") is None
    assert client.get_run(ended.info.run_id).data.tags[ENDED_BY_TAG] != "again"
