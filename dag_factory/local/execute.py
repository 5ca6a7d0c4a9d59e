"""Run one DAG through real Airflow on this machine, with the fan-out running in parallel.

``dag.test()`` runs tasks one at a time; ``dag.test(use_executor=True)`` hands them to the
``LocalExecutor``, whose workers talk to an api-server's Execution API. Airflow reads its config
when it is imported, so the run happens in a child process (``python -m
dag_factory.airflow.run_child``) that gets the local home's environment (with the URL of the home's
Execution API) and imports the DAG file; this process never imports Airflow. It polls the
SQLite metadata DB for task-instance states while the child runs (for the progress grid; the child's
exit ends the wait at once), and reads the final states and XComs from it afterwards (both through
dag_factory.local.run_records).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dag_factory.local.airflow_home import child_env, log_tail, metadata_db_path
from dag_factory.local.execution_server import EXECUTION_API_VAR, execution_api_env
from dag_factory.local.processes import sigint_ignored, sigterm_as_exit, stop_process_group
from dag_factory.local.run_records import (
    TaskInstanceResult,
    TaskProgress,
    XComEntry,
    find_run_id,
    read_dag_run_state,
    read_progress,
    read_task_instances,
    read_xcoms,
)

FINISHED_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
# LocalExecutor.end() can hang for good joining an idle worker that never got its shutdown message
# (seen on Airflow 3.3.2 under load): once the DAG run is final in the DB, wait this long, then stop.
FINISHED_RUN_GRACE = 20.0


@dataclass(frozen=True)
class RunResult:
    """What a local run did: the DAG run state, every task instance, every XCom."""

    dag_id: str
    run_id: str
    state: str
    task_instances: list[TaskInstanceResult]
    xcoms: list[XComEntry]
    wall_seconds: float
    log_path: Path
    returncode: int | None
    interrupted: bool = False
    error: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    marks: dict[str, str] = field(default_factory=dict)  # UTC ISO times of the child's start-up steps

    @property
    def succeeded(self) -> bool:
        return self.state == "success"

    def ti(self, task_id: str, map_index: int = -1) -> TaskInstanceResult:
        for ti in self.task_instances:
            if ti.task_id == task_id and ti.map_index == map_index:
                return ti
        raise KeyError(f"no task instance {task_id!r} (map_index {map_index}) in run {self.run_id}")

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        for entry in self.xcoms:
            if (entry.task_id, entry.key, entry.map_index) == (task_id, key, map_index):
                return entry.value
        raise KeyError(f"no xcom {key!r} from {task_id!r} (map_index {map_index}) in run {self.run_id}")


ProgressCallback = Callable[[list[TaskProgress]], None]


def run_dag(
    dag_file: Path,
    dag_id: str,
    *,
    logical_date: datetime | None,
    env: Mapping[str, str],
    on_progress: ProgressCallback | None = None,
    cleanup: Callable[[], None] | None = None,
    timeout: float | None = None,
    poll_interval: float = 0.5,
) -> RunResult:
    """Run ``dag_id`` from ``dag_file`` once for ``logical_date`` with the LocalExecutor.

    ``env`` comes from :func:`~dag_factory.local.airflow_home.prepare_airflow_home`; when it has no
    ``AIRFLOW__CORE__EXECUTION_API_SERVER_URL``, the home's Execution API is started, or found
    running from an earlier run (dag_factory.local.execution_server); pass the env of a running
    :func:`~dag_factory.local.airflow_home.api_server` to use that instead.
    The DAG file's folder becomes the dags folder: Airflow parses every ``.py`` file in it that
    mentions "airflow" and "dag" before the run, so keep only DAG files there. Runs on one home
    must not overlap (one SQLite DB). A naive ``logical_date`` is taken as UTC. For a DAG object:
    ``run_dag(Path(dag.fileloc), dag.dag_id, ...)``.

    ``on_progress`` gets the task instances every ``poll_interval`` seconds when they changed.
    ``cleanup`` is always called once the run is over, however it ended (also when Ctrl-C hits
    while the child starts: then the KeyboardInterrupt propagates after it). Ctrl-C during the
    run (or ``timeout``) stops the run's whole process group and returns a failed result with
    ``interrupted=True``.
    """
    try:
        with sigterm_as_exit():
            marks: dict[str, str] = {}
            if not env.get(EXECUTION_API_VAR):
                env, reused = execution_api_env(env)
                marks = {
                    "execution_api_ready": datetime.now(UTC).isoformat(),
                    "execution_api_reused": str(reused),
                }
            dag_file = dag_file.resolve()
            result = _run_child(dag_file, dag_id, logical_date, env, on_progress, timeout, poll_interval)
            return replace(result, marks={**marks, **result.marks})
    finally:
        if cleanup is not None:
            with sigint_ignored():
                cleanup()


def _run_child(
    dag_file: Path,
    dag_id: str,
    logical_date: datetime | None,
    env: Mapping[str, str],
    on_progress: ProgressCallback | None,
    timeout: float | None,
    poll_interval: float,
) -> RunResult:
    if logical_date is not None and logical_date.tzinfo is None:
        logical_date = logical_date.replace(tzinfo=UTC)
    run_after = datetime.now(UTC)
    db = metadata_db_path(env)
    run = RunId(db, dag_id, f"manual__{run_after.isoformat()}", exact=logical_date is not None)
    log_path = Path(env["AIRFLOW_HOME"]) / "logs" / "runs" / f"{dag_id}__{run_after:%Y%m%dT%H%M%S%f}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    marks_path = log_path.with_suffix(".marks.json")
    run_env = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(dag_file.parent)}
    cmd = [
        sys.executable, "-m", "dag_factory.airflow.run_child",
        "--dag-file", str(dag_file),
        "--dag-id", dag_id,
        "--logical-date", logical_date.isoformat() if logical_date else "none",
        "--run-after", run_after.isoformat(),
        "--timings", str(marks_path),
    ]  # fmt: skip
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            env=child_env(run_env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    stopped, outcome = "", "exited"
    try:
        outcome = _watch(proc, db, dag_id, run, on_progress, poll_interval, timeout)
        if outcome == "timeout":
            stopped = f"run stopped after the {timeout} s timeout"
    except KeyboardInterrupt:
        stopped = "run interrupted (Ctrl-C)"
    finally:
        with sigint_ignored():  # a second Ctrl-C must not cut the clean-up short
            stop_process_group(proc)
    interrupted = bool(stopped)
    wall = time.monotonic() - started
    run_id = run.found()
    tis = read_task_instances(db, dag_id, run_id, log_folder=Path(env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]))
    if on_progress is not None and not interrupted:  # after Ctrl-C the caller wants out, not a redraw
        on_progress(
            [TaskProgress(t.task_id, t.map_index, t.state, t.start, t.end, t.try_number) for t in tis]
        )
    state = "failed" if interrupted else (read_dag_run_state(db, dag_id, run_id) or "failed")
    error = stopped
    if not error and ((proc.returncode != 0 and outcome != "lingering") or state != "success"):
        failed = [f"{t.task_id}: {t.error}" for t in tis if t.state == "failed" and t.error]
        error = "\n".join(failed) if failed else log_tail(log_path, 30)
    return RunResult(
        dag_id=dag_id,
        run_id=run_id,
        state=state,
        task_instances=tis,
        xcoms=read_xcoms(db, dag_id, run_id),
        wall_seconds=wall,
        log_path=log_path,
        returncode=proc.returncode,
        interrupted=interrupted,
        error=error,
        timings={"run_wall": wall},
        marks=_read_marks(marks_path),
    )


class RunId:
    """The run id of the child's run. With a logical date it is ``manual__<run_after>``; a run without
    one gets a random suffix from Airflow, so it is looked up in the DB once the child created it."""

    def __init__(self, db: Path, dag_id: str, prefix: str, *, exact: bool) -> None:
        self.db, self.dag_id, self.prefix = db, dag_id, prefix
        self.known: str | None = prefix if exact else None

    def found(self) -> str:
        if self.known is None:
            self.known = find_run_id(self.db, self.dag_id, self.prefix)
        return self.known or self.prefix


def _read_marks(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _watch(
    proc: subprocess.Popen[bytes],
    db: Path,
    dag_id: str,
    run_id: RunId,
    on_progress: ProgressCallback | None,
    poll_interval: float,
    timeout: float | None,
) -> str:
    """Poll until the child exits: ``"exited"``, or ``"timeout"`` / ``"lingering"`` when it must be stopped.

    ``"lingering"``: the DAG run is final in the DB but the child has not exited
    :data:`FINISHED_RUN_GRACE` seconds later (see there).
    """
    now = time.monotonic()
    deadline = None if timeout is None else now + timeout
    finished_at: float | None = None
    last: list[TaskProgress] | None = None
    while proc.poll() is None:
        now = time.monotonic()
        if deadline is not None and now > deadline:
            return "timeout"
        if finished_at is None and read_dag_run_state(db, dag_id, run_id.found()) in {"success", "failed"}:
            finished_at = now
        elif finished_at is not None and now - finished_at > FINISHED_RUN_GRACE:
            return "lingering"
        if on_progress is not None:
            rows = read_progress(db, dag_id, run_id.found())
            if rows != last:
                on_progress(rows)
                last = rows
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=poll_interval)  # returns as soon as the child exits
    return "exited"
