"""The Execution API of a local run, served by a fork of the run's own process.

With the LocalExecutor every task process talks to an api-server's Execution API (task states, XComs,
heartbeats). `airflow api-server` took 10-12 s to answer on a 2-core machine: a new interpreter that
imports Airflow, the UI and the public API. The run's process has imported Airflow already, so a fork
of it serves the same app (``create_app(apps="execution")``, what ``airflow api-server --apps
execution`` serves, with the same JWT secret and metadata DB) after about a second, while the run's
process goes on parsing the DAG. The socket listens before the fork: a task that calls early waits in
the backlog instead of being refused.

Fork before the run opens a DB connection or starts a thread (the run's process starts neither before
:func:`start_execution_api`).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dag_factory.errors import DagFactoryError

STOP_GRACE = 5.0


class ExecutionApiError(DagFactoryError):
    """The local Execution API did not come up."""


@dataclass(frozen=True)
class ExecutionApi:
    """A forked Execution API server: its pid, base URL (``.../execution/``) and log."""

    pid: int
    url: str
    log_path: Path
    _ready_fd: int

    def wait_ready(self, timeout: float) -> None:
        """Block until the server has started (a byte on a pipe; no polling); raise if it died."""
        readable, _, _ = select.select([self._ready_fd], [], [], timeout)
        message = os.read(self._ready_fd, 16) if readable else None
        os.close(self._ready_fd)
        if message == b"ready":
            return
        reason = "exited" if message is not None else f"did not start within {timeout:.0f} s"
        raise ExecutionApiError(f"the local Execution API {reason}: see {self.log_path}")

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), then SIGKILL after STOP_GRACE seconds."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                return
            time.sleep(0.02)  # at the very end of a run: a graceful stop takes ~0.1 s
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


def start_execution_api(log_path: Path) -> ExecutionApi:
    """Fork a process serving the Execution API on 127.0.0.1 and a free port."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (the child; its work shows in every local run's tasks)
        code = 1
        try:
            os.close(read_fd)
            _serve(sock, write_fd, log_path)
            code = 0
        finally:
            os._exit(code)  # never return into the run's code
    os.close(write_fd)
    sock.close()
    return ExecutionApi(pid, f"http://127.0.0.1:{port}/execution/", log_path, read_fd)


def _serve(sock: socket.socket, ready_fd: int, log_path: Path) -> None:  # pragma: no cover
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "server"  # as airflow.api_fastapi.main sets it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run stops us with SIGTERM

    import uvicorn
    from airflow.api_fastapi.app import create_app

    app = create_app(apps="execution")

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                await _warm_up(app)
                os.write(ready_fd, b"ready")
                os.close(ready_fd)

    config = uvicorn.Config(
        app,
        log_config=None,  # keep Airflow's structlog set-up
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(STOP_GRACE),
    )
    _Server(config).run(sockets=[sock])


async def _warm_up(app: Any) -> None:  # pragma: no cover  (in the server process)
    """One request through the app itself: the API's versioned routes (cadwyn) are generated on the
    first request, ~5 s of CPU that would otherwise hold up the run's first tasks."""
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        await client.get("/execution/health")
