"""trained_model's trainer process through Dagster Pipes: logs and metadata stream into the run,
bad settings fail before anything runs, a crash shows the trainer's last lines, and cancelling
the run stops every trainer process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagster import AssetKey

from llm_pipeline.definitions import defs
from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
from llm_pipeline_tests.test_model_pipeline import TINY_MODEL, make_structured_corpus
from llm_pipeline_tests.test_pipeline import FAST, failures

CANCEL = """
import sys
from dagster import AssetKey, DagsterInstance
from llm_pipeline.definitions import defs

model = {**eval(sys.argv[2]), "max_steps": 0, "max_seconds": 600, "nproc_per_node": 2}
with DagsterInstance.get() as instance:
    defs.resolve_job_def("corpus_pipeline_job").execute_in_process(
        instance=instance, partition_key=sys.argv[1], raise_on_error=False,
        run_config={"ops": {"trained_model": {"config": model}}},
        asset_selection=[AssetKey("trained_model")],
    )
"""


def prepare(instance, data_root: Path, corpus: str) -> None:
    make_structured_corpus(data_root / "raw" / corpus)
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, [corpus])
    result = defs.resolve_job_def("corpus_data_job").execute_in_process(
        instance=instance, partition_key=corpus, run_config={"ops": FAST}
    )
    assert result.success


def train_only(instance, corpus: str, **model):
    return defs.resolve_job_def("corpus_pipeline_job").execute_in_process(
        instance=instance,
        partition_key=corpus,
        run_config={"ops": {"trained_model": {"config": {**TINY_MODEL, **model}}}},
        asset_selection=[AssetKey("trained_model")],
        raise_on_error=False,
    )


def trainer_pids(marker: str) -> list[int]:
    """Processes whose command line names the trainer's job folder for this corpus."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and "llm_pipeline.lm.train.trainer_main" in cmdline:
            pids.append(int(entry.name))
    return pids


def test_data_parallel_run_streams_logs_and_metadata(data_root: Path, instance) -> None:
    prepare(instance, data_root, "ddp")
    result = train_only(instance, "ddp", nproc_per_node=2)
    assert result.success, failures(result)
    metadata = result.asset_materializations_for_node("trained_model")[0].metadata
    assert metadata["processes"].value == 2 and metadata["steps"].value == 80
    assert metadata["val_bits_per_byte"].value < metadata["unigram_bits_per_byte"].value
    assert Path(metadata["path"].value, "model.safetensors").is_file()
    # Rank 0's progress lines arrived in the run's log through Pipes, once each.
    messages = [
        record.user_message
        for record in instance.all_logs(result.run_id)
        if record.dagster_event is None
    ]
    progress = [m for m in messages if m.startswith("step ")]
    assert [m.split(":")[0] for m in progress] == [f"step {n}" for n in (20, 40, 60, 80)]
    assert any("on 2 process(es)" in m for m in messages)


def test_bad_nproc_and_trainer_crash_fail_with_clear_reasons(data_root: Path, instance) -> None:
    prepare(instance, data_root, "bad")
    too_many = (os.cpu_count() or 1) + 1
    result = train_only(instance, "bad", nproc_per_node=too_many)
    assert not result.success
    assert f"nproc_per_node {too_many} must be between 1 and the" in failures(result)[0]
    assert "CPU cores available" in failures(result)[0]
    assert not (data_root.parent / "models" / "bad").exists()  # nothing ran

    # A context longer than the validation split: the trainer itself refuses and exits.
    result = train_only(instance, "bad", block_size=100_000)
    assert not result.success
    message = failures(result)[0]
    assert "the trainer exited with code 1" in message
    assert "error: train split has" in message and "lower block_size or add text" in message


def test_cancelling_the_run_stops_every_trainer_process(data_root: Path, instance) -> None:
    prepare(instance, data_root, "cancelme")
    run = subprocess.Popen(
        [sys.executable, "-c", CANCEL, "cancelme", repr(TINY_MODEL)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = "trainer-cancelme-"
    deadline = time.monotonic() + 300
    # torchrun plus its two ranks.
    while len(trainer_pids(marker)) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(trainer_pids(marker)) >= 3, "the trainer processes never started"
    run.send_signal(signal.SIGINT)  # what Dagster delivers to a step when a run is cancelled
    run.wait(timeout=120)
    deadline = time.monotonic() + 30
    while trainer_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert trainer_pids(marker) == []
    runs = instance.get_runs()
    assert len(runs) == 2 and not runs[0].is_success
    logs = instance.all_logs(runs[0].run_id)
    assert any("stopping every trainer process" in (r.user_message or "") for r in logs)
