"""The Execution API of a local Airflow home: started by the first run, found and reused by later ones.

The server (dag_factory.airflow.execution_api) takes ~9 s of a 2-core machine to come up, most of it
the API generating its versioned routes. A run starts it and leaves it up; it stops by itself after
$DAG_FACTORY_LOCAL_API_IDLE_MINUTES without a request (default 10; 0: each run stops it at its end).
``<home>/execution-api.json`` records it. A recorded server is reused only when its process is alive
and is ours, it answers its health check, and it was started for this home's metadata DB (same file,
same Airflow version): a home that was removed and made again (`make clean`), or an Airflow upgrade,
gets a new server, and the old one is stopped.
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

EXECUTION_API_VAR = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"
STATE_FILE = "execution-api.json"
MODULE = "dag_factory.airflow.execution_api"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 10.0


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


def stop_execution_api(home: Path) -> None:
    """Stop the Execution API recorded for ``home`` (if it still runs) and forget it."""
    with _locked(home / ".execution-api.lock"):
        state = _read_state(home)
        if state is not None:
            _stop(state)
        with contextlib.suppress(FileNotFoundError):
            (home / STATE_FILE).unlink()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _read_state(home: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((home / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and {"pid", "url", "db", "airflow"} <= state.keys() else None


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


def _stop(state: dict[str, Any]) -> None:
    process = _ours(int(state["pid"]))
    if process is None:
        return
    with contextlib.suppress(psutil.Error):
        process.terminate()  # uvicorn shuts down gracefully on SIGTERM
        _, alive = psutil.wait_procs([process], timeout=STOP_TIMEOUT)
        for straggler in alive:
            straggler.kill()


def main(argv: list[str] | None = None) -> int:
    """`python -m dag_factory.local.execution_server stop HOME` (`make clean` does, before removing it)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dag_factory.local.execution_server")
    parser.add_argument("action", choices=["stop"])
    parser.add_argument("home", type=Path, help="the local Airflow home, e.g. .dag-factory/airflow")
    args = parser.parse_args(argv)
    if (args.home / STATE_FILE).exists():
        stop_execution_api(args.home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
