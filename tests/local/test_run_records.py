"""Reading what a run left behind: task log paths, task errors, metadata DB values."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from dag_factory.local.run_records import _decode_xcom, parse_db_time, task_error, task_log_path


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
