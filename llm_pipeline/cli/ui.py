"""`llm-pipeline ui` (what `make ui` runs): the Dagster UI and daemon, on loopback, guarded.

The same two processes as `dg dev` (the real `dagster-webserver` app and `dagster-daemon`), with
one difference: the webserver's app is served behind `ui_guard.LoopbackGuard`, which refuses
GraphQL mutations over GET and any request whose Host or Origin is not the loopback address
served, so a web page open in the user's browser cannot add partitions or launch runs. The
daemon dies with this command (parent-death signal, lm/train/parent_watch.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from llm_pipeline import paths
from llm_pipeline.cli.common import dagster_instance
from llm_pipeline.errors import PipelineInputError
from llm_pipeline.lm.train.parent_watch import PARENT_PID_ENV
from llm_pipeline.ui_guard import LOOPBACK_NAMES

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_ui_parser(commands) -> None:
    ui = commands.add_parser(
        "ui", help="the Dagster UI and daemon on loopback, refusing cross-site requests"
    )
    ui.add_argument("--host", default="127.0.0.1", help=f"one of {', '.join(LOOPBACK_HOSTS)}")
    ui.add_argument("-p", "--port", type=int, default=3000)
    ui.set_defaults(func=ui_command)


def ui_command(args: argparse.Namespace) -> int:
    """Serve the guarded webserver until interrupted, with the daemon beside it."""
    if args.host not in LOOPBACK_HOSTS:
        raise PipelineInputError(
            f"--host {args.host}: the UI has no login and is served on loopback only "
            f"({', '.join(LOOPBACK_NAMES)}); put an authenticating proxy in front to share it"
        )
    import uvicorn
    from dagster_webserver.app import create_app_from_workspace_process_context

    from llm_pipeline.dagster_compat import workspace_process_context
    from llm_pipeline.ui_guard import LoopbackGuard

    instance = dagster_instance()
    root = paths.project_root()
    workspace = str(root / "workspace.yaml")
    daemon_command = [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", workspace]
    daemon = subprocess.Popen(
        [sys.executable, "-m", "llm_pipeline.lm.train.parent_watch", "--", *daemon_command],
        cwd=root,
        env={**os.environ, PARENT_PID_ENV: str(os.getpid())},
    )
    try:
        with workspace_process_context(instance, workspace) as context:
            app = LoopbackGuard(create_app_from_workspace_process_context(context), args.port)
            print(f"Dagster UI on http://{args.host}:{args.port} (loopback only)", flush=True)
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning", use_colors=False)
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    return 0
