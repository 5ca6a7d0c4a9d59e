"""The Execution API of local runs: `python -m dag_factory.airflow.execution_api --home-log LOG ...`.

With the LocalExecutor every task process talks to an api-server's Execution API (task states, XComs,
heartbeats). `airflow api-server` took 10-12 s to answer on a 2-core machine: a new interpreter that
imports Airflow, the UI and the public API, and then generates the API's versioned routes (cadwyn)
on its first request, ~5 s of CPU. This process serves only the Execution API app
(``create_app(apps="execution")``, what ``airflow api-server --apps execution`` serves, with the
local home's JWT secret and metadata DB), makes that first request itself before it reports ready,
and stays up for later runs until it has been idle for ``--idle-seconds``: a local Airflow home pays
for it once, not per run. dag_factory.local.execution_server starts, finds and stops it.

It detaches from its starter (a session of its own), reports ``ready <pid> <port>`` on the file
descriptor ``--ready-fd`` and exits on SIGTERM or when idle.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Scope = dict[str, Any]
STOP_GRACE = 5


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dag_factory.airflow.execution_api")
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--idle-seconds", type=float, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args(argv)
    if os.fork() != 0:  # the starter waits for this parent only; the server lives on on its own
        os._exit(0)
    os.setsid()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    serve(sock, args.ready_fd, args.log, args.idle_seconds)
    return 0


def serve(sock: socket.socket, ready_fd: int, log_path: Path, idle_seconds: float) -> None:
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "server"  # as airflow.api_fastapi.main sets it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for a run is not for us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    import uvicorn
    from airflow.api_fastapi.app import create_app

    app = create_app(apps="execution")
    last_request = [time.monotonic()]

    async def counting(scope: Scope, receive: Any, send: Any) -> None:
        last_request[0] = time.monotonic()
        await app(scope, receive, send)

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                await _warm_up(app)
                asyncio.get_running_loop().create_task(self._exit_when_idle())
                os.write(ready_fd, f"ready {os.getpid()} {sock.getsockname()[1]}\n".encode())
                os.close(ready_fd)

        async def _exit_when_idle(self) -> None:
            while not self.should_exit:
                await asyncio.sleep(min(30.0, max(idle_seconds / 4, 0.5)))
                if time.monotonic() - last_request[0] > idle_seconds:
                    print(f"no request for {idle_seconds:.0f} s: stopping", flush=True)
                    self.should_exit = True

    config = uvicorn.Config(
        counting,  # the app, noting the time of every request
        log_config=None,  # keep Airflow's structlog set-up
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=STOP_GRACE,
    )
    _Server(config).run(sockets=[sock])


async def _warm_up(app: Any) -> None:  # pragma: no cover  (in the server process)
    """One request through the app itself: the API's versioned routes (cadwyn) are generated on the
    first request, ~5 s of CPU that would otherwise hold up the run's first tasks."""
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        await client.get("/execution/health")


if __name__ == "__main__":
    sys.exit(main())
