"""What a local run left behind, read without Airflow: its task instances, DAG run state and XComs
in the home's SQLite metadata DB, and its task logs.

Plain ``sqlite3`` on a read-only connection, safe while the run writes (a locked or not yet migrated
DB reads as empty, after a few tries); task logs are Airflow's JSON lines at the default
``log_filename_template``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple


class TaskProgress(NamedTuple):
    """One task instance as seen while the run is in flight."""

    task_id: str
    map_index: int
    state: str | None
    start: datetime | None
    end: datetime | None
    try_number: int = 0  # of the try running or just ended (0: none started yet)


@dataclass(frozen=True)
class TaskInstanceResult:
    """One task instance after the run."""

    task_id: str
    map_index: int
    state: str | None
    start: datetime | None
    end: datetime | None
    try_number: int
    log_path: Path | None = None

    @property
    def error(self) -> str:
        """``"ExcType: message"`` of the last error the task logged (empty when none)."""
        return task_error(self.log_path) if self.log_path else ""

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class XComEntry:
    task_id: str
    map_index: int
    key: str
    value: Any


@contextlib.contextmanager
def _connect(db: Path) -> Iterator[sqlite3.Connection | None]:
    if not db.exists():
        yield None
        return
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def _query(db: Path, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    for attempt in range(5):
        try:
            with _connect(db) as conn:
                return [] if conn is None else conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:  # locked or not migrated yet
            if "no such table" in str(exc) or attempt == 4:
                return []
            time.sleep(0.1)
    return []


def parse_db_time(value: str | None) -> datetime | None:
    """A timestamp column as stored by Airflow in SQLite, as an aware UTC datetime."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_TI_SQL = (
    "SELECT task_id, map_index, state, start_date, end_date, try_number FROM task_instance "
    "WHERE dag_id = ? AND run_id = ? ORDER BY task_id, map_index"
)


def read_task_instances(
    db: Path, dag_id: str, run_id: str, *, log_folder: Path | None = None
) -> list[TaskInstanceResult]:
    return [
        TaskInstanceResult(
            task_id,
            map_index,
            state,
            parse_db_time(start),
            parse_db_time(end),
            try_number,
            None
            if log_folder is None
            else task_log_path(log_folder, dag_id, run_id, task_id, map_index, try_number),
        )
        for task_id, map_index, state, start, end, try_number in _query(db, _TI_SQL, (dag_id, run_id))
    ]


def task_log_path(
    log_folder: Path, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int
) -> Path:
    """Where Airflow's default ``log_filename_template`` puts one attempt's task log."""
    path = log_folder / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    if map_index >= 0:
        path = path / f"map_index={map_index}"
    return path / f"attempt={max(try_number, 1)}.log"


def log_events(log_path: Path) -> list[dict[str, Any]]:
    """The events of a (JSON lines) task log, oldest first; [] when it cannot be read."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def task_error(log_path: Path) -> str:
    """``"ExcType: message"`` of the last error event in a (JSON lines) task log; empty when none."""
    for event in reversed(log_events(log_path)):
        if event.get("level") != "error":
            continue
        details = event.get("error_detail") or []
        if details and isinstance(details[-1], dict):
            return f"{details[-1].get('exc_type', 'Error')}: {details[-1].get('exc_value', '')}".strip()
        return str(event.get("event", ""))
    return ""


def read_progress(db: Path, dag_id: str, run_id: str) -> list[TaskProgress]:
    return [
        TaskProgress(t.task_id, t.map_index, t.state, t.start, t.end, t.try_number)
        for t in read_task_instances(db, dag_id, run_id)
    ]


def read_dag_run_state(db: Path, dag_id: str, run_id: str) -> str | None:
    rows = _query(db, "SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", (dag_id, run_id))
    return str(rows[0][0]) if rows and rows[0][0] is not None else None


def find_run_id(db: Path, dag_id: str, prefix: str) -> str | None:
    """The id of ``dag_id``'s run whose id is ``prefix`` plus ``_`` and a suffix (None until it exists)."""
    rows = _query(
        db,
        "SELECT run_id FROM dag_run WHERE dag_id = ? AND substr(run_id, 1, ?) = ?",
        (dag_id, len(prefix) + 1, prefix + "_"),
    )
    return str(rows[0][0]) if rows else None


def read_xcoms(db: Path, dag_id: str, run_id: str) -> list[XComEntry]:
    rows = _query(
        db,
        "SELECT task_id, map_index, key, value FROM xcom WHERE dag_id = ? AND run_id = ? "
        "ORDER BY task_id, map_index, key",
        (dag_id, run_id),
    )
    return [
        XComEntry(task_id, map_index, key, _decode_xcom(value)) for task_id, map_index, key, value in rows
    ]


def _decode_xcom(raw: Any) -> Any:
    """The XCom JSON column holds ``json.dumps(value)`` (Airflow's XComEncoder for other types)."""
    if isinstance(raw, bytes):
        raw = raw.decode()
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw
