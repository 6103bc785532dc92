"""Die with the parent: a trainer must not outlive the process that launched it.

The trainer runs in its own process group (so a cancel reaches every rank), which also means a
`kill -9` of the orchestrating process group does not reach it. Without this module it trains on
as an orphan and later writes a checkpoint into a run that no longer exists.

Two mechanisms, because neither covers every case alone:

- Linux's parent-death signal (`prctl(PR_SET_PDEATHSIG)`): the kernel sends SIGTERM the moment
  the parent goes. It is kept across `exec`, so
  `python -m llm_pipeline.lm.train.parent_watch -- CMD` gives it to a command we do not control
  (torchrun's launcher). Caveat: it fires when the parent *thread* that forked exits, so a
  launcher that forks from a short-lived worker thread would trigger it early; Dagster's Pipes
  client forks from the step's own (main) thread.
- A watchdog thread polling `os.getppid()` against the expected parent (`LLM_PIPELINE_PARENT_PID`,
  set by the launcher): portable (macOS has no PDEATHSIG), and it catches a parent that died
  before the signal was armed.

Either way `ParentWatch.stop_requested()` turns True: the training loop saves its resumable state
at the next step boundary and returns, the trainer exits without writing a checkpoint, and if
that takes longer than `EXIT_GRACE_S` the process exits anyway. No Dagster here (core).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PARENT_PID_ENV = "LLM_PIPELINE_PARENT_PID"
PR_SET_PDEATHSIG = 1
POLL_S = 0.5
EXIT_GRACE_S = 60.0
EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a process stopped by SIGTERM


class TrainerStopped(Exception):
    """The launcher died (or stopped us): exit without writing anything into the run's folder."""


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send `sig` to this process when its parent dies; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def expected_parent() -> int:
    """The parent the launcher named in `LLM_PIPELINE_PARENT_PID`, else the current parent."""
    value = os.environ.get(PARENT_PID_ENV, "").strip()
    return int(value) if value.isdigit() else os.getppid()


class ParentWatch:
    """Turns the parent's death (signal or watchdog) into a stop request for the training loop."""

    def __init__(self, parent: int | None = None, log=None, own_process: bool = True) -> None:
        """`own_process=False` (tests) only records the stop: no forced exit, stdio untouched."""
        self.parent = expected_parent() if parent is None else parent
        self.own_process = own_process
        self.gone = threading.Event()
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._reason = ""

    def start(self) -> ParentWatch:
        set_parent_death_signal(signal.SIGTERM)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        threading.Thread(target=self._poll, name="parent-watch", daemon=True).start()
        if os.getppid() != self.parent:  # died before the signal was armed
            self._stop(f"parent process {self.parent} was already gone at start")
        return self

    def stop_requested(self) -> bool:
        return self.gone.is_set()

    @property
    def reason(self) -> str:
        return self._reason

    def _on_signal(self, signum, frame) -> None:
        self._stop(f"received {signal.Signals(signum).name}")

    def _poll(self) -> None:
        while not self.gone.is_set():
            if os.getppid() != self.parent:
                self._stop(f"parent process {self.parent} died")
                return
            time.sleep(POLL_S)

    def _stop(self, reason: str) -> None:
        if self.gone.is_set():
            return
        self._reason = reason
        self.gone.set()
        with contextlib.suppress(OSError, ValueError):
            self._log(f"stopping: {reason}; saving the training state to resume from")
        if not self.own_process:
            return
        if os.getppid() != self.parent:  # gone, not just a cancel: nobody reads our output
            _detach_from_dead_pipes()
        # A loop stuck in one long step must not keep the machine busy for an owner that is gone.
        timer = threading.Timer(EXIT_GRACE_S, os._exit, args=(EXIT_CODE,))
        timer.daemon = True
        timer.start()


def _detach_from_dead_pipes() -> None:
    """Point stdout/stderr at /dev/null: they were pipes read by the dead launcher, and a write
    to them now raises BrokenPipeError in the middle of saving the training state."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    """`python -m llm_pipeline.lm.train.parent_watch -- CMD...`: exec CMD with the parent-death
    signal.

    For launchers we cannot change (torchrun): CMD keeps this process's pid, so it dies with our
    parent, and its children are told (through `LLM_PIPELINE_PARENT_PID`) to watch it in turn.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m llm_pipeline.lm.train.parent_watch -- CMD...", file=sys.stderr)
        return 2
    parent = expected_parent()
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:
        return EXIT_CODE
    os.environ[PARENT_PID_ENV] = str(os.getpid())
    os.execvp(args[0], args)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
