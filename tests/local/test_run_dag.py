"""run_dag drives real Airflow (LocalExecutor + api-server) on a fresh SQLite home."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dag_factory.local.airflow_home import ApiServer, api_server, is_migrated, prepare_airflow_home
from dag_factory.local.execute import TaskProgress, run_dag

pytestmark = pytest.mark.integration

LOGICAL_DATE = datetime(2026, 1, 5, tzinfo=UTC)
VALUES = ["de", "fr", "nl", "be"]

HEADER = """\
from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, TaskGroup
"""

FAN_OUT_DAG = (
    HEADER
    + """
with DAG("fan_out", start_date=datetime(2026, 1, 1), schedule=None, max_active_tasks=4):
    for value in {values!r}:
        with TaskGroup(value):
            sleep = BashOperator(task_id="sleep", bash_command="sleep 3")
            echo = BashOperator(task_id="echo", bash_command=f"echo result-{{value}}")
            sleep >> echo
"""
)

FAILURE_DAG = (
    HEADER
    + """
with DAG("with_failure", start_date=datetime(2026, 1, 1), schedule=None, max_active_tasks=6):
    for value in ["de", "fr", "nl"]:
        with TaskGroup(value):
            create = BashOperator(task_id="create", bash_command="echo created")
            code = "exit 1" if value == "de" else "echo ok"
            work = BashOperator(task_id="work", bash_command=code)
            delete = BashOperator(task_id="delete", bash_command="echo deleted").as_teardown(setups=create)
            create >> work >> delete
"""
)

SLOW_DAG = (
    HEADER
    + """
with DAG("slow", start_date=datetime(2026, 1, 1), schedule=None):
    BashOperator(task_id="wait", bash_command="sleep 120")
"""
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    home = tmp_path_factory.mktemp("airflow-home")
    started = time.monotonic()
    env = prepare_airflow_home(home, parallelism=8)
    print(f"\nairflow db migrate: {time.monotonic() - started:.1f}s")
    with api_server(env, timeout=120) as running:
        print(f"api-server answered after {running.startup_seconds:.1f}s")
        yield running


def _write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "dags" / "dag.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(source))
    return path


def test_prepare_is_idempotent(server: ApiServer) -> None:
    home = Path(server.env["AIRFLOW_HOME"])
    assert is_migrated(server.env)
    started = time.monotonic()
    env = prepare_airflow_home(home, parallelism=8)
    assert time.monotonic() - started < 1.0
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"


def test_fan_out_runs_in_parallel(server: ApiServer, tmp_path: Path) -> None:
    dag_file = _write(tmp_path, FAN_OUT_DAG.format(values=VALUES))
    seen: list[list[TaskProgress]] = []
    result = run_dag(dag_file, "fan_out", logical_date=LOGICAL_DATE, env=server.env, on_progress=seen.append)
    print(f"fan-out wall: {result.wall_seconds:.1f}s")

    assert result.succeeded, result.error
    assert {(ti.task_id, ti.state) for ti in result.task_instances} == {
        (f"{value}.{step}", "success") for value in VALUES for step in ("sleep", "echo")
    }
    sleeps = [result.ti(f"{value}.sleep") for value in VALUES]
    starts = [ti.start for ti in sleeps if ti.start is not None]
    ends = [ti.end for ti in sleeps if ti.end is not None]
    assert len(starts) == len(ends) == 4
    assert max(starts) < min(ends), "the four sleeps did not overlap in time"
    assert all(ti.try_number == 1 for ti in result.task_instances)
    assert result.xcom("fr.echo") == "result-fr"
    # progress was reported while running, and the last report is final
    assert any(any(row.state == "running" for row in rows) for rows in seen)
    assert {row.state for row in seen[-1]} == {"success"}


def test_failure_is_isolated_and_teardown_runs(server: ApiServer, tmp_path: Path) -> None:
    dag_file = _write(tmp_path, FAILURE_DAG)
    result = run_dag(dag_file, "with_failure", logical_date=LOGICAL_DATE, env=server.env)

    assert result.state == "failed"
    assert result.ti("de.work").state == "failed"
    assert "non-zero exit code 1" in result.ti("de.work").error
    assert "de.work: AirflowException" in result.error
    assert result.ti("de.delete").state == "success"
    failed_end, teardown_start = result.ti("de.work").end, result.ti("de.delete").start
    assert failed_end is not None and teardown_start is not None and teardown_start >= failed_end
    for value in ("fr", "nl"):
        assert {result.ti(f"{value}.{step}").state for step in ("create", "work", "delete")} == {"success"}


def test_rerun_same_logical_date_replaces_the_run(server: ApiServer, tmp_path: Path) -> None:
    dag_file = _write(tmp_path, FAN_OUT_DAG.format(values=["de"]))
    first = run_dag(dag_file, "fan_out", logical_date=LOGICAL_DATE, env=server.env)
    second = run_dag(dag_file, "fan_out", logical_date=LOGICAL_DATE, env=server.env)
    assert first.succeeded and second.succeeded
    assert first.run_id != second.run_id
    assert second.xcom("de.echo") == "result-de"


def test_ctrl_c_stops_the_run_and_cleans_up(server: ApiServer, tmp_path: Path) -> None:
    dag_file = _write(tmp_path, SLOW_DAG)
    cleaned: list[bool] = []

    def interrupt_once_running(rows: list[TaskProgress]) -> None:
        if any(row.state == "running" for row in rows):
            raise KeyboardInterrupt

    started = time.monotonic()
    result = run_dag(
        dag_file,
        "slow",
        logical_date=LOGICAL_DATE,
        env=server.env,
        on_progress=interrupt_once_running,
        cleanup=lambda: cleaned.append(True),
    )
    assert result.interrupted and result.state == "failed" and not result.succeeded
    assert cleaned == [True]
    assert time.monotonic() - started < 100


def test_broken_dag_file_reports_the_import_error(server: ApiServer, tmp_path: Path) -> None:
    dag_file = _write(tmp_path, HEADER + "\nraise ValueError('broken on purpose')\n")
    result = run_dag(dag_file, "nope", logical_date=LOGICAL_DATE, env=server.env)
    assert result.state == "failed" and result.returncode == 3
    assert "broken on purpose" in result.error
