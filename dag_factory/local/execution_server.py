"""The Execution API of a local Airflow home: started by the first run, found and reused by later ones.

The server (dag_factory.airflow.execution_api) takes ~9 s of a 2-core machine to come up, most of it
the API generating its versioned routes. A run starts it and leaves it up; it stops by itself after
$DAG_FACTORY_LOCAL_API_IDLE_MINUTES without a request (default 10; 0: each run stops it at its end),
or when `dag-factory stop-server` stops it (`make clean` does). ``<home>/execution-api.json`` records
it. A recorded server is reused only when its process is alive and is ours, it answers its health
check, and it was started for this home's metadata DB (same file, same Airflow version): a home that
was removed and made again, or an Airflow upgrade, gets a new server, and the old one is stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil

from dag_factory import settings
from dag_factory.local.airflow_home import (
    AirflowHomeError,
    child_env,
    home_identity,
    log_tail,
    metadata_db_path,
)
from dag_factory.local.processes import stop_session

EXECUTION_API_VAR = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"
STATE_FILE = "execution-api.json"
MODULE = "dag_factory.airflow.execution_api"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class ExecutionApi:
    """A running Execution API of a local home, as its record says it was started."""

    url: str
    pid: int
    idle_seconds: float  # it stops by itself after this long without a request


def execution_api_env(env: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    """``env`` plus the URL of this home's Execution API, started if needed; True when it was reused."""
    try:
        idle = settings.local_api_idle_seconds()
    except ValueError as exc:
        raise AirflowHomeError(str(exc)) from None
    home = Path(env["AIRFLOW_HOME"])
    with _locked(home / ".execution-api.lock"):
        state = _read_state(home)
        if state is not None and _usable(state, env):
            return {**env, EXECUTION_API_VAR: state["url"]}, True
        if state is not None:
            _stop(state)
        state = _start(env, idle or 60.0)  # "off": up for this run only (stop_unless_kept stops it)
        (home / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    return {**env, EXECUTION_API_VAR: state["url"]}, False


def stop_unless_kept(env: Mapping[str, str]) -> None:
    """After a run: stop the home's Execution API when $DAG_FACTORY_LOCAL_API_IDLE_MINUTES is 0/off."""
    with contextlib.suppress(ValueError):
        if settings.local_api_idle_seconds() > 0:
            return
    stop_execution_api(Path(env["AIRFLOW_HOME"]))


def running_execution_api(home: Path) -> ExecutionApi | None:
    """The Execution API recorded for ``home`` when it still runs (None when none does)."""
    state = _read_state(home)
    return _running(state) if state is not None else None


def stop_execution_api(home: Path) -> ExecutionApi | None:
    """Stop the Execution API recorded for ``home`` and forget it; what was stopped (None: none ran).

    Returns once its process group is gone."""
    if not (home / STATE_FILE).exists():
        return None  # nothing recorded (nor a home to take the lock in)
    with _locked(home / ".execution-api.lock"):
        state = _read_state(home)
        stopped = _stop(state) if state is not None else None
        with contextlib.suppress(FileNotFoundError):
            (home / STATE_FILE).unlink()
    return stopped


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


_RECORDED = frozenset({"pid", "url", "db", "airflow", "idle_seconds"})


def _read_state(home: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((home / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.keys() >= _RECORDED else None


def _db_identity(env: Mapping[str, str]) -> str:
    return f"{metadata_db_path(env)}:{home_identity(env)}"


def _ours(pid: int) -> psutil.Process | None:
    """The process ``pid`` when it is a local Execution API server (a pid can be reused)."""
    try:
        process = psutil.Process(pid)
        return process if MODULE in " ".join(process.cmdline()) else None
    except psutil.Error:
        return None


def _usable(state: dict[str, Any], env: Mapping[str, str]) -> bool:
    if state["db"] != _db_identity(env) or state["airflow"] != version("apache-airflow"):
        return False
    if _ours(int(state["pid"])) is None:
        return False
    try:
        with urllib.request.urlopen(state["url"] + "health", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _start(env: Mapping[str, str], idle_seconds: float) -> dict[str, Any]:
    log_path = Path(env["AIRFLOW_HOME"]) / "logs" / "execution-api.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    command = [
        sys.executable, "-m", MODULE,
        "--ready-fd", str(write_fd), "--idle-seconds", str(idle_seconds), "--log", str(log_path),
    ]  # fmt: skip
    started = time.monotonic()
    try:
        subprocess.run(
            command,
            env=child_env(env),
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
            timeout=60,
        )  # returns once it has detached (forked into a session of its own)
        os.close(write_fd)
        write_fd = -1
        ready, _, _ = select.select([read_fd], [], [], START_TIMEOUT)  # no polling: a line, or EOF
        message = os.read(read_fd, 256).decode() if ready else ""
    except (OSError, subprocess.SubprocessError) as exc:
        raise AirflowHomeError(f"could not start the local Execution API: {exc}") from None
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    words = message.split()
    if len(words) != 3 or words[0] != "ready":
        why = "exited" if ready else f"did not start within {START_TIMEOUT:.0f} s"
        raise AirflowHomeError(f"the local Execution API {why}:\n{log_tail(log_path)}")
    return {
        "pid": int(words[1]),
        "url": f"http://127.0.0.1:{words[2]}/execution/",
        "db": _db_identity(env),
        "airflow": version("apache-airflow"),
        "idle_seconds": idle_seconds,
        "startup_seconds": round(time.monotonic() - started, 2),
        "log": str(log_path),
    }


def _described(state: dict[str, Any]) -> ExecutionApi:
    return ExecutionApi(str(state["url"]), int(state["pid"]), float(state["idle_seconds"]))


def _running(state: dict[str, Any]) -> ExecutionApi | None:
    return _described(state) if _ours(int(state["pid"])) is not None else None


def _stop(state: dict[str, Any]) -> ExecutionApi | None:
    process = _ours(int(state["pid"]))
    if process is None:
        return None
    stop_session(process, grace=STOP_TIMEOUT)  # uvicorn shuts down gracefully on SIGTERM
    return _described(state)
