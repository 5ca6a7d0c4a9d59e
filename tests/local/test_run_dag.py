"""run_dag drives real Airflow (LocalExecutor + api-server) on a fresh SQLite home."""

from __future__ import annotations

import shlex
import subprocess
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from dag_factory.local import airflow_home
from dag_factory.local.airflow_home import ApiServer, is_migrated, prepare_airflow_home
from dag_factory.local.execute import run_dag
from dag_factory.local.run_records import TaskProgress
from tests.servers.airflow import running_airflow

pytestmark = pytest.mark.integration

LOGICAL_DATE = datetime(2026, 1, 5, tzinfo=UTC)
VALUES = ["de", "fr", "nl", "be"]

HEADER = """\
from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, TaskGroup
"""

# Each value's "sleep" task waits at a barrier (files in a folder) until every value's has started, and,
# when told to, until the test has seen them all running in a progress report: none can end before the
# last one started, however slowly the machine starts them; a task that has waited BARRIER_DEADLINE_S
# fails the run, and so do the others once it gave up.
FAN_OUT_DAG = (
    HEADER
    + """
with DAG("fan_out", start_date=datetime(2026, 1, 1), schedule=None, max_active_tasks=4):
    for value in {values!r}:
        with TaskGroup(value):
            sleep = BashOperator(task_id="sleep", bash_command={barrier!r}.replace("@VALUE@", value))
            echo = BashOperator(task_id="echo", bash_command=f"echo result-{{value}}")
            sleep >> echo
"""
)
BARRIER_DEADLINE_S = 300
BARRIER = """\
dir={folder}
touch "$dir/started-@VALUE@"
while true; do
    started=$(find "$dir" -name 'started-*' | wc -l)
    if [ "$started" -ge {count} ] && {{ [ {released} = no ] || [ -e "$dir/released" ]; }}; then exit 0; fi
    if [ -e "$dir/abandoned" ]; then echo "barrier: another task gave up waiting" >&2; exit 1; fi
    if [ "$SECONDS" -ge {deadline} ]; then
        touch "$dir/abandoned"
        echo "barrier: $started of {count} tasks started within {deadline} s (released: {released})" >&2
        exit 1
    fi
    sleep 0.1
done
"""


def barrier(folder: Path, count: int, *, released: bool = False) -> str:
    """The bash command of the fan-out DAG's "sleep" tasks (see FAN_OUT_DAG); ``released``: they also
    wait for ``folder/released``."""
    folder.mkdir(parents=True, exist_ok=True)
    return BARRIER.format(
        folder=shlex.quote(str(folder)),
        count=count,
        released="yes" if released else "no",
        deadline=BARRIER_DEADLINE_S,
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

# "wait" would take 120 s and then write `finished`; it writes its own and its sleep's PIDs first, and
# "wait_started" succeeds once it sees them: from then on the run is interrupted in the middle of "wait".
SLOW_DAG = (
    HEADER
    + """
with DAG("slow", start_date=datetime(2026, 1, 1), schedule=None):
    BashOperator(task_id="wait", bash_command={wait!r})
    BashOperator(task_id="wait_started", bash_command={wait_started!r})
"""
)


def slow_dag(folder: Path) -> str:
    pids, finished = shlex.quote(str(folder / "pids")), shlex.quote(str(folder / "finished"))
    wait = f'sleep 120 & echo "$$ $!" > {pids}.tmp && mv {pids}.tmp {pids}; wait; touch {finished}'
    wait_started = (
        f"until [ -s {pids} ]; do "
        f'[ "$SECONDS" -ge 120 ] && {{ echo "wait never started" >&2; exit 1; }}; sleep 0.1; done'
    )
    return SLOW_DAG.format(wait=wait, wait_started=wait_started)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    home = tmp_path_factory.mktemp("airflow-home")
    started = time.monotonic()
    with running_airflow(home, parallelism=8, timeout=120) as running:
        print(f"\nairflow db migrate: {time.monotonic() - started - running.startup_seconds:.1f}s")
        print(f"api-server answered after {running.startup_seconds:.1f}s")
        yield running


def _write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "dags" / "dag.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(source))
    return path


def test_prepare_is_idempotent(server: ApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migrated home is left alone: no migration (not even the cached copy), no child process (an
    `airflow` command takes seconds), the migration marker untouched."""
    home = Path(server.env["AIRFLOW_HOME"])
    assert is_migrated(server.env)
    markers = sorted(home.glob(".migrated-airflow-*"))
    before = [(m, m.stat().st_mtime_ns, m.read_text()) for m in markers]
    calls: list[str] = []
    monkeypatch.setattr(airflow_home, "migrate", lambda env: calls.append("migrate"))

    def spawned(*args: Any, **kwargs: Any) -> Any:
        calls.append(f"process {args[0] if args else kwargs.get('args')}")
        return real_popen(*args, **kwargs)

    real_popen = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", spawned)
    env = prepare_airflow_home(home, parallelism=8)
    monkeypatch.undo()
    assert calls == []
    assert len(before) == 1 and [(m, m.stat().st_mtime_ns, m.read_text()) for m in markers] == before
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"


def test_fan_out_runs_in_parallel(server: ApiServer, tmp_path: Path) -> None:
    folder = tmp_path / "barrier"
    command = barrier(folder, len(VALUES), released=True)
    dag_file = _write(tmp_path, FAN_OUT_DAG.format(values=VALUES, barrier=command))
    seen: list[list[TaskProgress]] = []
    sleeps = {f"{value}.sleep" for value in VALUES}

    def progress(rows: list[TaskProgress]) -> None:
        seen.append(rows)
        if sleeps <= {row.task_id for row in rows if row.state == "running"}:
            (folder / "released").touch()  # all four shown running at once: they may end

    result = run_dag(
        dag_file, "fan_out", logical_date=LOGICAL_DATE, env=server.env, on_progress=progress, timeout=600
    )
    print(f"fan-out wall: {result.wall_seconds:.1f}s")

    assert result.succeeded, result.error
    assert {(ti.task_id, ti.state) for ti in result.task_instances} == {
        (f"{value}.{step}", "success") for value in VALUES for step in ("sleep", "echo")
    }
    sleeping = [result.ti(f"{value}.sleep") for value in VALUES]
    starts = [ti.start for ti in sleeping if ti.start is not None]
    ends = [ti.end for ti in sleeping if ti.end is not None]
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
    dag_file = _write(tmp_path, FAN_OUT_DAG.format(values=["de"], barrier=barrier(tmp_path / "barrier", 1)))
    first = run_dag(dag_file, "fan_out", logical_date=LOGICAL_DATE, env=server.env)
    second = run_dag(dag_file, "fan_out", logical_date=LOGICAL_DATE, env=server.env)
    assert first.succeeded and second.succeeded
    assert first.run_id != second.run_id
    assert second.xcom("de.echo") == "result-de"


def test_ctrl_c_stops_the_run_and_cleans_up(server: ApiServer, tmp_path: Path) -> None:
    dag_file = _write(tmp_path, slow_dag(tmp_path))
    cleaned: list[bool] = []

    def interrupt_once_running(rows: list[TaskProgress]) -> None:
        states = {row.task_id: row.state for row in rows}
        if states.get("wait") == "running" and states.get("wait_started") == "success":
            raise KeyboardInterrupt

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
    # stopped in the middle of "wait", not after it: it never finished, and none of its processes is
    # left when run_dag returns
    assert not (tmp_path / "finished").exists(), "run_dag returned only once the task had finished"
    pids = [int(pid) for pid in (tmp_path / "pids").read_text().split()]
    assert not [pid for pid in pids if running(pid)], f"the task's processes outlived the run: {pids}"


def test_broken_dag_file_reports_the_import_error(server: ApiServer, tmp_path: Path) -> None:
    dag_file = _write(tmp_path, HEADER + "\nraise ValueError('broken on purpose')\n")
    result = run_dag(dag_file, "nope", logical_date=LOGICAL_DATE, env=server.env)
    assert result.state == "failed" and result.returncode == 3
    assert "broken on purpose" in result.error
