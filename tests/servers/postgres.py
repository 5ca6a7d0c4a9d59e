"""A throwaway PostgreSQL cluster on a free loopback port, for integration tests.

``postgres_server`` (session) runs initdb + pg_ctl as the ``postgres`` OS user when we are root, with
trust auth on 127.0.0.1 only, and stops it with ``pg_ctl stop -m immediate`` at the end.
``postgres_db`` (function) gives each test a fresh, empty database on that cluster.
A server that cannot start fails the test: there is no skip, in CI or anywhere.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.servers.ports import free_port

PG_USER = "postgres"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    dbname: str

    @property
    def uri(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"

    def connect(self, dbname: str | None = None) -> Any:
        """A psycopg (3) connection, autocommit on; the caller closes it."""
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname or self.dbname,
            autocommit=True,
        )

    def create_database(self, name: str) -> PostgresServer:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return replace(self, dbname=name)

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def find_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/*/bin holding initdb (or the one on PATH)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("postgres test server: no initdb found: apt-get install postgresql")


def _run_as(user: str | None, cmd: list[str], timeout: float = 60) -> None:
    # initdb refuses to run as root, so drop to the postgres user when we are root
    demote = None
    if user is not None:
        entry = pwd.getpwnam(user)

        def demote() -> None:
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)

    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    if user is not None:
        env["HOME"] = pwd.getpwnam(user).pw_dir
    proc = subprocess.run(cmd, preexec_fn=demote, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(
            f"postgres test server: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )


@contextlib.contextmanager
def run_postgres() -> Iterator[PostgresServer]:
    """Start a cluster, yield its address, stop it and remove its files."""
    bin_dir = find_bin_dir()
    run_user = PG_USER if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="dag-factory-pg-"))
    data, sock, logfile = base / "data", base / "sock", base / "server.log"
    sock.mkdir()
    if run_user is not None:
        entry = pwd.getpwnam(run_user)
        for path in (base, sock):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(base, 0o755)
    port = free_port()
    started = False
    try:
        _run_as(
            run_user,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        opts = f"-k {sock} -p {port} -h 127.0.0.1 -c fsync=off -c full_page_writes=off"
        _run_as(
            run_user,
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(logfile),
                "-o",
                opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
        started = True
        server = PostgresServer("127.0.0.1", port, PG_USER, "postgres", "postgres")
        yield server.create_database("test")
    except RuntimeError as exc:
        log_text = logfile.read_text() if logfile.exists() else "(no server log)"
        raise RuntimeError(f"{exc}\nserver log:\n{log_text}") from exc
    finally:
        if started:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                _run_as(run_user, [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL for the whole session (host, port, user, password, dbname, uri)."""
    with run_postgres() as server:
        yield server


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A fresh empty database on the session server, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    server = postgres_server.create_database(name)
    try:
        yield server
    finally:
        postgres_server.drop_database(name)
