"""A throwaway local Airflow home: environment variables, metadata DB migration, api-server.

Airflow reads its configuration when it is first imported, so everything here works through
environment variables handed to child processes (``airflow db migrate``, ``airflow api-server``,
the DAG run itself). Nothing in this module imports Airflow.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from dag_factory import settings
from dag_factory.errors import DagFactoryError
from dag_factory.local.processes import free_port, sigterm_as_exit, stop_process_group
from dag_factory.plan.cache import usable_folder

# Fixed on purpose: the home is local and throwaway, and every process that signs or checks a
# task token (the api-server, the executor inside the run) must share the same secret.
LOCAL_JWT_SECRET = "dag-factory-local-jwt-secret-not-for-production"
LOCAL_API_SECRET_KEY = "dag-factory-local-api-secret-key-not-for-production"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
HEALTH_PATH = "/api/v2/monitor/health"


class AirflowHomeError(DagFactoryError):
    """A local Airflow home could not be prepared or its api-server did not come up."""


def airflow_env(home: Path, *, dags_folder: Path | None = None, parallelism: int = 32) -> dict[str, str]:
    """Return the environment variables that point Airflow at ``home`` (no side effects)."""
    home = home.resolve()
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(parallelism),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str((dags_folder or home / "dags").resolve()),
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API_AUTH__JWT_SECRET": LOCAL_JWT_SECRET,
        "AIRFLOW__API__SECRET_KEY": LOCAL_API_SECRET_KEY,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # a busy laptop (or a loaded CI runner) answers task API calls slowly: a task should not die of it
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
    }


def metadata_db_path(env: Mapping[str, str]) -> Path:
    """The SQLite file behind ``env`` (as returned by :func:`airflow_env`)."""
    return Path(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))


def prepare_airflow_home(
    home: Path, *, dags_folder: Path | None = None, parallelism: int = 32
) -> dict[str, str]:
    """Create ``home``, migrate its SQLite metadata DB once, and return its environment variables.

    Idempotent: a home already migrated by this Airflow version is left alone (a cheap check of a
    marker file and the ``alembic_version`` table), and concurrent callers serialise on a lock file.
    """
    env = airflow_env(home, dags_folder=dags_folder, parallelism=parallelism)
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    Path(env["AIRFLOW__CORE__DAGS_FOLDER"]).mkdir(parents=True, exist_ok=True)
    with (home / ".migrate.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_migrated(env):
            migrate(env)
    return env


def _marker(env: Mapping[str, str]) -> Path:
    return Path(env["AIRFLOW_HOME"]) / f".migrated-airflow-{version('apache-airflow')}"


def _mark_migrated(env: Mapping[str, str]) -> None:
    # a token of its own per metadata DB made: a home made again is told apart from the old one even
    # when its new DB file gets the old one's inode number (home_identity)
    _marker(env).write_text(f"{version('apache-airflow')}\n{uuid.uuid4().hex}\n")


def home_identity(env: Mapping[str, str]) -> str:
    """What tells this home's metadata DB from one made before it at the same path."""
    try:
        return _marker(env).read_text().strip().replace("\n", ":")
    except OSError:
        return "missing"


def is_migrated(env: Mapping[str, str]) -> bool:
    """True when the metadata DB exists, carries an alembic revision and our marker is present."""
    db = metadata_db_path(env)
    if not (db.is_file() and _marker(env).is_file()):
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return False
    return row is not None


def migrate(env: Mapping[str, str]) -> None:
    """Bring ``env``'s metadata DB to this Airflow's schema; raise with the output tail when it fails.

    A SQLite home is seeded from a migrated copy kept in the cache (one per Airflow version) when
    there is one: ``airflow db migrate`` takes seconds, a copy milliseconds. The first migration of a
    version fills the cache.
    """
    template = _migrated_template(env)
    db = metadata_db_path(env)
    if template is not None and template.is_file():
        _copy_sqlite(template, db)
        _mark_migrated(env)
        return
    proc = subprocess.run(
        [_airflow_bin(), "db", "migrate"],
        env=child_env(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise AirflowHomeError(f"airflow db migrate failed (exit {proc.returncode}):\n{tail}")
    _mark_migrated(env)
    if template is not None:
        _copy_sqlite(db, template)


def _migrated_template(env: Mapping[str, str]) -> Path | None:
    """Where a freshly migrated SQLite metadata DB of this Airflow version is kept; None when the home
    is not on SQLite or caching is off ($DAG_FACTORY_CACHE_DIR) or its folder is not private."""
    if not env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "").startswith("sqlite:///"):
        return None
    folder = settings.user_cache_dir("airflow-db")
    if folder is None or not usable_folder(folder):
        return None
    return folder / f"airflow-{version('apache-airflow')}.db"


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy (SQLite's backup API), written beside ``target`` and renamed into place, so
    a concurrent reader never sees half a file."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    with (
        contextlib.closing(sqlite3.connect(source)) as db,
        contextlib.closing(sqlite3.connect(partial)) as copy,
    ):
        db.backup(copy)
    os.replace(partial, target)


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """The current process environment overlaid with ``env``, for a child process."""
    merged = {**os.environ, **env}
    merged.setdefault("PYTHONUNBUFFERED", "1")
    return merged


def _airflow_bin() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


@dataclass(frozen=True)
class ApiServer:
    """A running local api-server and the environment that points tasks at it."""

    url: str
    pid: int
    log_path: Path
    env: dict[str, str]
    startup_seconds: float


@contextlib.contextmanager
def api_server(env: Mapping[str, str], *, timeout: float = 120.0) -> Iterator[ApiServer]:
    """Run ``airflow api-server`` on 127.0.0.1 and a free port for the duration of the block.

    Yields an :class:`ApiServer` whose ``env`` is ``env`` plus
    ``AIRFLOW__CORE__EXECUTION_API_SERVER_URL``. The server runs in its own process group, which
    is always terminated on exit (also on an exception or Ctrl-C).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(env["AIRFLOW_HOME"]) / "logs" / f"api-server-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    server_env = {**env, "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/"}
    started = time.monotonic()
    with sigterm_as_exit(), log_path.open("wb") as log:
        proc = subprocess.Popen(
            [_airflow_bin(), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=child_env(server_env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait_healthy(proc, url + HEALTH_PATH, log_path, timeout)
            yield ApiServer(url, proc.pid, log_path, server_env, time.monotonic() - started)
        finally:
            stop_process_group(proc)


def _wait_healthy(proc: subprocess.Popen[bytes], health_url: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AirflowHomeError(
                f"airflow api-server exited with {proc.returncode} before answering:\n{log_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(health_url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise AirflowHomeError(
        f"airflow api-server did not answer {health_url} within {timeout:.0f} s:\n{log_tail(log_path)}"
    )


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (empty when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
