#!/usr/bin/env python
"""Benchmark of a whole `llm-pipeline run`: the peak memory of every process it starts (the
CLI's own included) and the wall time of its steps, at corpus size S and 2S.

Each size is a generated corpus (`synthetic_corpus.py`) added with `llm-pipeline corpus add`
into a fresh temporary data root, models root and DAGSTER_HOME, then run end to end with
`trained_model.max_seconds` of training. While it runs, the resident size of the CLI process
and of each descendant (cleaning workers, the trainer) is sampled every 0.2 s. Printed:

- peak RSS per kind of process, and peak at 2S / at S (≈ 1: memory does not grow with the
  corpus; the goal is also that no process passes 1 GB at S ≈ 130 MB);
- seconds per step from the Dagster instance, and `trained_model` + `evaluation_report`
  (the goal at S = 60 MB and 30 s of training: at most 60 s).

    .venv/bin/python benchmarks/run_memory.py [--mb 65] [--seconds 30]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from synthetic_corpus import ensure_documents  # noqa: E402

CLI = [sys.executable, "-c", "import sys; from llm_pipeline.cli import main; sys.exit(main())"]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                found += [int(x) for x in fh.read().split()]
    except OSError:
        pass
    return found


def _kind(pid: int, root: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    if pid == root:
        return "cli"
    if "trainer_main" in cmdline:
        return "trainer"
    if "multiprocessing" in cmdline:
        return "worker"
    return "other"


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            line = next(x for x in fh if x.startswith("VmRSS"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return 0.0


def run_sampled(cmd: list[str], env: dict) -> tuple[int, dict[str, float]]:
    """Run `cmd`; return (exit code, peak RSS in MB per kind of process). Its output goes to a
    file (a pipe read only at the end would fill and block the run)."""
    peaks: dict[str, float] = {}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            todo = [proc.pid]
            while todo:
                pid = todo.pop()
                todo += _children(pid)
                kind = _kind(pid, proc.pid)
                if kind is not None:
                    peaks[kind] = max(peaks.get(kind, 0.0), _rss_mb(pid))
            time.sleep(0.2)
        if proc.returncode:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
    return proc.returncode, peaks


def step_seconds(home: Path) -> dict[str, float]:
    """Seconds per step of the newest run in DAGSTER_HOME `home`."""
    os.environ["DAGSTER_HOME"] = str(home)
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        return {
            s.step_key: (s.end_time or 0) - (s.start_time or 0)
            for s in instance.get_run_step_stats(run.run_id)
        }


def one_size(mb: float, seconds: float) -> dict:
    docs, info = ensure_documents(mb, 0, log=lambda line: None)
    with tempfile.TemporaryDirectory(prefix="run-memory-") as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "DAGSTER_HOME": str(root / "home"),
            "LLM_PIPELINE_DATA_DIR": str(root / "data"),
            "LLM_PIPELINE_MODELS_DIR": str(root / "models"),
            "HF_HUB_OFFLINE": "1",
            "GX_ANALYTICS_ENABLED": "false",
            "DAGSTER_DISABLE_TELEMETRY": "true",
        }
        (root / "home").mkdir()
        config = root / "run.yaml"
        config.write_text(f"trained_model:\n  max_seconds: {seconds}\n")
        subprocess.run([*CLI, "corpus", "add", "big", str(docs)], env=env, check=True,
                       capture_output=True)  # fmt: skip
        started = time.perf_counter()
        code, peaks = run_sampled([*CLI, "run", "--corpus", "big", "--config", str(config)], env)
        wall = time.perf_counter() - started
        if code:
            raise SystemExit(f"llm-pipeline run failed at {mb:g} MB (exit {code})")
        steps = step_seconds(root / "home")
    return {"mb": info["mb"], "wall": wall, "peaks": peaks, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=65.0, help="corpus size S (also runs 2S)")
    parser.add_argument("--seconds", type=float, default=30.0, help="training budget")
    args = parser.parse_args()
    rows = [one_size(mb, args.seconds) for mb in (args.mb, 2 * args.mb)]
    kinds = sorted({k for r in rows for k in r["peaks"]})
    print(f"{'MB':>7}{'wall s':>8}" + "".join(f"{k + ' MB':>12}" for k in kinds)
          + f"{'train+report s':>16}")  # fmt: skip
    for r in rows:
        tail = r["steps"].get("trained_model", 0) + r["steps"].get("evaluation_report", 0)
        peaks = "".join(f"{r['peaks'].get(k, 0):>12.0f}" for k in kinds)
        print(f"{r['mb']:>7.1f}{r['wall']:>8.1f}{peaks}{tail:>16.1f}")
    for r in rows:
        slow = sorted(r["steps"].items(), key=lambda kv: -kv[1])[:6]
        print(f"{r['mb']:.0f} MB steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in slow))
    for k in kinds:
        small, large = rows[0]["peaks"].get(k, 0), rows[1]["peaks"].get(k, 0)
        if small:
            print(f"peak RSS of {k} at 2S / at S = {large / small:.2f}")
    print(f"largest process at 2S: {max(rows[1]['peaks'].values()):.0f} MB")


if __name__ == "__main__":
    main()
