"""Launch the trainer as its own process (or `torchrun` group) through Dagster Pipes.

`PipesSubprocessClient` runs one process and, on cancel, sends SIGINT to that one process only;
its stderr is either passed through or left unread. A trainer under `torchrun` is a group of
processes, and a failed step should say why the trainer died. So this client starts the trainer
in a new process group, tees its stderr (every line still reaches the step's log) keeping the
last lines, stops the whole group when the run is cancelled, and puts those last lines into the
error when the trainer exits non-zero.

Its own process group also means a `kill -9` of the step's group does not reach the trainer;
so the trainer (and torchrun's launcher, through `lm.train.parent_watch`) is told this process's pid
and dies with it (see `llm_pipeline/lm/train/parent_watch.py`).
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping, Sequence

from dagster import (
    AssetExecutionContext,
    DagsterExecutionInterruptedError,
    Failure,
    PipesClientCompletedInvocation,
    PipesSubprocessClient,
    open_pipes_session,
)

from llm_pipeline.lm.train.parent_watch import PARENT_PID_ENV

TAIL_LINES = 20
# After SIGTERM, how long the trainer group gets to exit before SIGKILL.
TERMINATION_GRACE_S = 10.0


def available_devices(device: str) -> tuple[int, str]:
    """How many processes `--nproc-per-node` may start: CUDA devices, else CPU cores."""
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return torch.cuda.device_count(), "CUDA devices"
    return os.cpu_count() or 1, "CPU cores"


def trainer_command(job_file: str, nproc_per_node: int) -> list[str]:
    """`python -m llm_pipeline.lm.train.trainer_main`, or the same module under torchrun for DDP."""
    module = ["-m", "llm_pipeline.lm.train.trainer_main", "--job", job_file]
    if nproc_per_node <= 1:
        return [sys.executable, *module]
    # `python -m torch.distributed.run` is torchrun, found without relying on PATH; started
    # through parent_watch so torchrun's own process dies with the step too (its ranks watch it).
    watched = [sys.executable, "-m", "llm_pipeline.lm.train.parent_watch", "--"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*watched, *torchrun, "--nproc-per-node", str(nproc_per_node), *module]


def _kill_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to every process of the trainer's group, SIGKILL to whatever is left."""
    _kill_group(process, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=TERMINATION_GRACE_S)
    _kill_group(process, signal.SIGKILL)
    process.wait()


class TrainerPipesClient(PipesSubprocessClient):
    """A `PipesSubprocessClient` for process groups: group kill on cancel, stderr in errors."""

    def run(  # type: ignore[override]
        self,
        *,
        context: AssetExecutionContext,
        command: str | Sequence[str],
        extras: Mapping | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> PipesClientCompletedInvocation:
        with open_pipes_session(
            context=context,
            context_injector=self.context_injector,
            message_reader=self.message_reader,
            extras=extras,
        ) as session:
            process = subprocess.Popen(
                command,
                cwd=cwd or self.cwd,
                env={
                    **os.environ,
                    **self.env,
                    **(env or {}),
                    **session.get_bootstrap_env_vars(),
                    # The trainer (or torchrun) watches this process and stops when it dies.
                    PARENT_PID_ENV: str(os.getpid()),
                },
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,  # its own process group, so a cancel reaches every rank
            )
            tail: deque[str] = deque(maxlen=TAIL_LINES)

            def tee() -> None:
                assert process.stderr is not None
                for line in process.stderr:
                    sys.stderr.write(line)
                    tail.append(line.rstrip("\n"))

            reader = threading.Thread(target=tee, daemon=True)
            reader.start()
            try:
                process.wait()
            except (DagsterExecutionInterruptedError, KeyboardInterrupt):
                context.log.info("run cancelled: stopping every trainer process")
                _stop_group(process)
                raise
            finally:
                # Ranks that outlived rank 0 (a crash) must not keep the GPU busy.
                _kill_group(process, signal.SIGKILL)
                reader.join(timeout=5)
            if process.returncode != 0:
                lines = "\n".join(tail) or "(no output)"
                raise Failure(
                    description=f"the trainer exited with code {process.returncode}; "
                    f"its last lines:\n{lines}"
                )
        return PipesClientCompletedInvocation(session)
