"""The runner's watch of its child process, and how it finds the id of a run without a logical date."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from dag_factory.local import execute
from dag_factory.local.processes import stop_process_group


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
