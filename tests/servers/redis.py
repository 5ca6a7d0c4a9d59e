"""Debian's ``redis-server`` on a free loopback port: the Celery broker of tests/servers/airflow_cluster.py.

``running_redis(root)`` installs the package with apt when it is missing (as root, like
scripts/bootstrap.sh), starts ``redis-server`` in the foreground with no persistence, waits for
``PING`` to answer ``PONG``, and stops it (and removes nothing but its own folder) on exit. A server that
cannot start raises: there is no skip, in CI or anywhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dag_factory.local.processes import stop_process_group
from tests.servers.ports import free_port

REDIS_SERVER = "/usr/bin/redis-server"
APT_PACKAGE = "redis-server"
START_TIMEOUT_S = 30.0


class RedisStartError(RuntimeError):
    """redis-server is missing and cannot be installed, or did not answer; the message says why."""


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def url(self) -> str:
        """The Celery broker URL (database 0)."""
        return f"redis://{self.host}:{self.port}/0"


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args], capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL
    )


def ensure_installed() -> None:
    """apt-get install redis-server when it is missing (after apt-get update if the index lacks it)."""
    if os.access(REDIS_SERVER, os.X_OK):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RedisStartError(f"{REDIS_SERVER} not found: run scripts/bootstrap.sh as root (installs it)")
    install = ("install", "-y", "-qq", "--no-install-recommends", APT_PACKAGE)
    done = _apt(*install)
    if done.returncode != 0:  # a fresh machine has no package index yet
        _apt("update", "-qq")
        done = _apt(*install)
    if done.returncode != 0 or not os.access(REDIS_SERVER, os.X_OK):
        raise RedisStartError(f"apt-get install {APT_PACKAGE} failed:\n{done.stdout}\n{done.stderr}")
    # Debian's package starts a system-wide server on 6379; the tests start their own on loopback
    subprocess.run(["service", APT_PACKAGE, "stop"], capture_output=True, check=False)


def ping(host: str, port: int) -> bool:
    """True when a Redis server answers PING on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def running_redis(root: Path) -> Iterator[RedisServer]:
    """Start redis-server with its files under ``root`` (created); stop it on exit."""
    ensure_installed()
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_file = root / "redis.log"
    argv = [
        REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(root),
        "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
    ]  # fmt: skip
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ping("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RedisStartError(f"redis-server did not answer on port {port}:\n{log_file.read_text()}")
            time.sleep(0.1)
        yield RedisServer("127.0.0.1", port, proc, log_file)
    finally:
        stop_process_group(proc)
