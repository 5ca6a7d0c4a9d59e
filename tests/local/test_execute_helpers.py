"""Pure helpers of the runner: environment, log paths, task errors, DB value parsing."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dag_factory.local import execute
from dag_factory.local.airflow_home import (
    airflow_env,
    free_port,
    is_migrated,
    log_tail,
    metadata_db_path,
    stop_process_group,
)
from dag_factory.local.execute import _decode_xcom, parse_db_time, task_error, task_log_path


def test_airflow_env_points_everything_at_the_home(tmp_path: Path) -> None:
    env = airflow_env(tmp_path / "home", parallelism=6)
    assert env["AIRFLOW_HOME"] == str((tmp_path / "home").resolve())
    assert metadata_db_path(env) == (tmp_path / "home" / "airflow.db").resolve()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "6"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert "AIRFLOW__CORE__EXECUTION_API_SERVER_URL" not in env  # set by api_server()
    assert not is_migrated(env)


def test_free_port_and_log_tail(tmp_path: Path) -> None:
    assert 0 < free_port() < 65536
    log = tmp_path / "x.log"
    log.write_text("\n".join(str(i) for i in range(100)))
    assert log_tail(log, 3) == "97\n98\n99"
    assert log_tail(tmp_path / "missing.log") == ""


def test_task_log_path_follows_airflow_template(tmp_path: Path) -> None:
    plain = task_log_path(tmp_path, "d", "manual__x", "de.run", -1, 2)
    assert plain == tmp_path / "dag_id=d" / "run_id=manual__x" / "task_id=de.run" / "attempt=2.log"
    mapped = task_log_path(tmp_path, "d", "r", "t", 3, 0)
    assert mapped.parts[-2:] == ("map_index=3", "attempt=1.log")


def test_task_error_reads_the_last_error_event(tmp_path: Path) -> None:
    log = tmp_path / "attempt=1.log"
    events = [
        {"level": "info", "event": "starting"},
        {"level": "error", "event": "Task failed with exception",
         "error_detail": [{"exc_type": "RuntimeError", "exc_value": "forced failure for de"}]},
        {"level": "info", "event": "done"},
    ]  # fmt: skip
    log.write_text("not json\n" + "\n".join(json.dumps(e) for e in events))
    assert task_error(log) == "RuntimeError: forced failure for de"
    log.write_text(json.dumps({"level": "error", "event": "plain error"}))
    assert task_error(log) == "plain error"
    assert task_error(tmp_path / "missing.log") == ""


def test_db_values() -> None:
    assert parse_db_time("2026-01-05 04:00:00.123456") == datetime(2026, 1, 5, 4, 0, 0, 123456, tzinfo=UTC)
    assert parse_db_time(None) is None
    assert _decode_xcom('"result-de"') == "result-de"
    assert _decode_xcom('"{\\"a\\": 1}"') == '{"a": 1}'  # a JSON-looking string stays a string
    assert _decode_xcom('{"rows": 3}') == {"rows": 3}
    assert _decode_xcom("not json") == "not json"


def test_watch_stops_a_child_lingering_after_the_run_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LocalExecutor.end() can hang after the run is final: the watcher gives up after a grace period."""
    db = tmp_path / "airflow.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE dag_run (dag_id TEXT, run_id TEXT, state TEXT)")
        conn.execute("INSERT INTO dag_run VALUES ('d', 'r', 'success')")
        conn.commit()
    monkeypatch.setattr(execute, "FINISHED_RUN_GRACE", 0.5)
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        started = time.monotonic()
        run = execute.RunId(db, "d", "r", exact=True)
        assert execute._watch(proc, db, "d", run, None, 0.1, None) == "lingering"
        assert time.monotonic() - started < 5
        other = execute.RunId(db, "d", "other-run", exact=True)
        assert execute._watch(proc, db, "d", other, None, 0.1, 0.3) == "timeout"
    finally:
        stop_process_group(proc)
    assert proc.returncode is not None


def test_run_id_of_a_run_without_a_logical_date_is_found_by_its_prefix(tmp_path: Path) -> None:
    db = tmp_path / "airflow.db"
    run = execute.RunId(db, "d", "manual__2026-01-05T00:00:00+00:00", exact=False)
    assert run.found() == "manual__2026-01-05T00:00:00+00:00"  # not created yet
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE dag_run (dag_id TEXT, run_id TEXT, state TEXT)")
        row = ("d", "manual__2026-01-05T00:00:00+00:00_AbC12xYz", "running")
        conn.execute("INSERT INTO dag_run VALUES (?, ?, ?)", row)
        conn.commit()
    assert run.found() == "manual__2026-01-05T00:00:00+00:00_AbC12xYz"
