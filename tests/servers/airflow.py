"""Real Airflow for integration tests, two ways.

- ``airflow_server`` (session): a migrated home and an api-server; runs go through
  ``dag_factory.local.execute.run_dag`` (``dag.test(use_executor=True)``, LocalExecutor). Fast, but that
  loop is not a scheduler: it queues every ready task at once, ignoring pools and ``max_active_tasks``,
  and nothing detects a task whose worker died (no heartbeat check). Reschedule-mode sensors work.
- ``airflow_deployment`` (session): what production runs: api-server, ``airflow scheduler`` (with the
  LocalExecutor) and ``airflow dag-processor`` on their own home; DAG files go in its dags folder, runs
  are triggered through the REST API. Pools are enforced, and a task whose worker was killed is failed
  by the scheduler's heartbeat check (``task_instance_heartbeat_timeout``, 20 s here) and retried.
  Its processes started with the session, so connections are set per test through the REST API
  (``set_connection``), not through ``AIRFLOW_CONN_*`` variables.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dag_factory.local.airflow_home import (
    ApiServer,
    api_server,
    child_env,
    metadata_db_path,
    prepare_airflow_home,
)
from dag_factory.local.execute import RunResult
from dag_factory.local.processes import stop_process_group
from dag_factory.local.run_records import (
    TaskProgress,
    read_dag_run_state,
    read_progress,
    read_task_instances,
    read_xcoms,
)
from tests.servers.airflow_api import AirflowApi, quote

POOL = "sagemaker_api"
ENVIRONMENT = "e2e"  # the dag-factory environment the deployment's workers are configured for
HEARTBEAT_TIMEOUT_S = 20
LOCKED_DEADLINE_S = 30.0  # how long a REST call retries Airflow's 503 "Database is locked"


def _airflow() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def _set_pool(env: dict[str, str], name: str, slots: int) -> None:
    subprocess.run(
        [_airflow(), "pools", "set", name, str(slots), f"SageMaker API calls (tests, {slots} slots)"],
        env=child_env(env), check=True, capture_output=True, timeout=120,
    )  # fmt: skip


@contextlib.contextmanager
def running_airflow(
    home: Path,
    *,
    parallelism: int,
    timeout: float,
    dags_folder: Path | None = None,
    settings: Mapping[str, str] | None = None,
    pools: Mapping[str, int] | None = None,
) -> Iterator[ApiServer]:
    """A migrated Airflow home at ``home`` (``settings`` over its environment, ``pools`` set) and an
    api-server on it, stopped on exit."""
    env = {**prepare_airflow_home(home, dags_folder=dags_folder, parallelism=parallelism), **(settings or {})}
    for name, slots in (pools or {}).items():
        _set_pool(env, name, slots)
    with api_server(env, timeout=timeout) as server:
        yield server


@contextlib.contextmanager
def running_components(
    server: ApiServer, logs: Path, components: Sequence[str] = ("scheduler", "dag-processor")
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``airflow <component>`` for each of ``components`` on the api-server's home, each in a process
    group of its own logging to ``logs/<component>.log``; stopped on exit."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for component in components:
            with (logs / f"{component}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(
                        # the triggerer's log server would take the fixed port 8794 (another home may run)
                        [_airflow(), component, *(["--skip-serve-logs"] if component == "triggerer" else [])],
                        env=child_env(server.env),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
        yield processes
    finally:
        for process in processes:
            stop_process_group(process)


@pytest.fixture(scope="session")
def airflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A migrated Airflow home with the `sagemaker_api` pool, and an api-server (for ``run_dag``)."""
    home = tmp_path_factory.mktemp("e2e-airflow")
    with running_airflow(home, parallelism=16, timeout=120, pools={POOL: 4}) as server:
        yield server


@dataclass
class Deployment:
    """A running api-server + scheduler + dag-processor on one home (see module doc)."""

    server: ApiServer
    dags: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    last_run_id: str = ""

    @property
    def env(self) -> dict[str, str]:
        return self.server.env

    @property
    def db(self) -> Path:
        return metadata_db_path(self.env)

    # --- the REST API ------------------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call; a 503 "Database is locked" is asked again for LOCKED_DEADLINE_S."""
        return AirflowApi(self.server.url, locked_retry_s=LOCKED_DEADLINE_S).call(method, path, body)

    def set_connection(self, conn_id: str, conn_type: str, **fields: Any) -> None:
        """Create or replace a connection (``extra`` as a dict)."""
        with contextlib.suppress(urllib.error.HTTPError):
            self.api("DELETE", f"/api/v2/connections/{conn_id}")
        body = {"connection_id": conn_id, "conn_type": conn_type, **fields}
        if isinstance(body.get("extra"), dict):
            body["extra"] = json.dumps(body["extra"])
        self.api("POST", "/api/v2/connections", body)

    def set_pool(self, name: str, slots: int) -> None:
        _set_pool(self.env, name, slots)

    # --- runs ----------------------------------------------------------------------------------------
    def deploy(self, name: str, source: str) -> Path:
        """Put a DAG file (its text) in the dags folder; the dag-processor finds it within seconds."""
        target = self.dags / f"{name}.py"
        target.write_text(source)
        return target

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Until the dag-processor has parsed the DAG (the REST API knows it)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.api("GET", f"/api/v2/dags/{dag_id}")
                return
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(1)

    def trigger(self, dag_id: str, logical_date: dt.datetime) -> str:
        self.wait_for_dag(dag_id)
        answer = self.api(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": logical_date.isoformat()}
        )
        self.last_run_id = str(answer["dag_run_id"])
        return self.last_run_id

    def mark_failed(self, dag_id: str, run_id: str) -> None:
        """What an operator does in the UI with a run that can no longer finish."""
        self.api("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", {"state": "failed"})

    def mark_task_failed(self, dag_id: str, run_id: str, task_id: str) -> None:
        """What an operator does in the UI with a task that hangs: set its state to failed."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        self.api("PATCH", path, {"new_state": "failed"})

    # --- what a data engineer does in the UI (the bodies the Airflow 3 UI posts) ---------------------
    def api_error(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A call that is expected to be refused: (HTTP status, decoded body)."""
        try:
            answer = self.api(method, path, body)
        except urllib.error.HTTPError as exc:
            text = exc.read()
            return exc.code, json.loads(text) if text else None
        raise AssertionError(f"{method} {path} was accepted: {answer}")

    def trigger_run(self, dag_id: str, **body: Any) -> str:
        """The UI's Trigger (POST dagRuns) with ``body`` as given (``logical_date`` required, may be None)."""
        self.wait_for_dag(dag_id)
        answer = self.api("POST", f"/api/v2/dags/{quote(dag_id)}/dagRuns", body)
        self.last_run_id = str(answer["dag_run_id"])
        return self.last_run_id

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.api("GET", f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}")
        return answer

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of ``dag_id``, oldest logical date (then run_after) first."""
        answer = self.api("GET", f"/api/v2/dags/{quote(dag_id)}/dagRuns?limit=100&order_by=run_after")
        return list(answer["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """The run's task instances by task id (state, try_number, start_date, end_date ...)."""
        path = f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances?limit=1000"
        return {str(ti["task_id"]): ti for ti in self.api("GET", path)["task_instances"]}

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of one task instance (the UI's try picker), oldest first."""
        instance = f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances/{quote(task_id)}"
        path = f"{instance}/tries?limit=100"
        return sorted(self.api("GET", path)["task_instances"], key=lambda t: int(t["try_number"]))

    def clear_tasks(
        self, dag_id: str, run_id: str, task_ids: list[str], *, only_failed: bool = False,
        include_downstream: bool = True,
    ) -> list[str]:  # fmt: skip
        """The UI's Clear on a task instance, its default options (downstream only; the UI leaves
        ``reset_dag_runs`` to the API's default, true); the task ids Airflow cleared."""
        body = {
            "dag_run_id": run_id,
            "dry_run": False,
            "include_downstream": include_downstream,
            "include_future": False,
            "include_past": False,
            "include_upstream": False,
            "only_failed": only_failed,
            "run_on_latest_version": False,
            "task_ids": task_ids,
        }
        answer = self.api("POST", f"/api/v2/dags/{quote(dag_id)}/clearTaskInstances", body)
        return sorted(str(ti["task_id"]) for ti in answer["task_instances"])

    def clear_run(self, dag_id: str, run_id: str, *, only_failed: bool) -> Any:
        """The UI's Clear on a run ("only failed tasks": the repair of a run)."""
        body = {
            "dry_run": False,
            "only_failed": only_failed,
            "only_new": False,
            "run_on_latest_version": False,
        }
        return self.api("POST", f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/clear", body)

    def backfill(
        self, dag_id: str, from_date: dt.datetime, to_date: dt.datetime, *, max_active_runs: int,
        reprocess_behavior: str = "none",
    ) -> dict[str, Any]:  # fmt: skip
        """The UI's Backfill (POST /api/v2/backfills)."""
        self.wait_for_dag(dag_id)
        body = {
            "dag_id": dag_id,
            "from_date": from_date.isoformat(),
            "to_date": to_date.isoformat(),
            "max_active_runs": max_active_runs,
            "reprocess_behavior": reprocess_behavior,
            "run_backwards": False,
            "dag_run_conf": {},
            "run_on_latest_version": True,  # the UI's default for a backfill
        }
        answer: dict[str, Any] = self.api("POST", "/api/v2/backfills", body)
        return answer

    def wait_for_run_state(self, dag_id: str, run_id: str, states: tuple[str, ...], *, timeout: float) -> str:
        """Until the run's state (metadata DB) is one of ``states``; that state."""
        deadline = time.monotonic() + timeout
        while (state := read_dag_run_state(self.db, dag_id, run_id)) not in states:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} of {dag_id} still {state} after {timeout:.0f}s")
            time.sleep(0.5)
        return str(state)

    def wait(
        self,
        dag_id: str,
        run_id: str,
        *,
        timeout: float,
        on_progress: Callable[[list[TaskProgress]], None] | None = None,
    ) -> RunResult:
        """Until the run is over; ``on_progress`` gets the task instances every half second."""
        started = time.monotonic()
        while read_dag_run_state(self.db, dag_id, run_id) not in ("success", "failed"):
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"run {run_id} of {dag_id} not over after {timeout:.0f}s")
            if on_progress is not None:
                on_progress(read_progress(self.db, dag_id, run_id))
            time.sleep(0.5)
        return self.result(dag_id, run_id, time.monotonic() - started)

    def result(self, dag_id: str, run_id: str, wall: float = 0.0) -> RunResult:
        logs = Path(self.env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"])
        tis = read_task_instances(self.db, dag_id, run_id, log_folder=logs)
        state = read_dag_run_state(self.db, dag_id, run_id) or "failed"
        failed = [f"{t.task_id}: {t.error}" for t in tis if t.state == "failed"]
        xcoms = read_xcoms(self.db, dag_id, run_id)
        return RunResult(
            dag_id=dag_id, run_id=run_id, state=state, task_instances=tis, xcoms=xcoms, wall_seconds=wall,
            log_path=logs, returncode=0, error="\n".join(failed),
        )  # fmt: skip


DEPLOYMENT_SETTINGS = {
    # every component is configured for one environment; each task checks it is the DAG's
    "DAG_FACTORY_ENV": ENVIRONMENT,
    # a killed worker's task is failed (and retried) by the scheduler this soon
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "5",
    # new DAG files are found and parsed within seconds
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "16",
}


@pytest.fixture(scope="session")
def airflow_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """api-server + scheduler + dag-processor + triggerer (deferred tasks wait there: the sagemaker-job
    backend's jobs); their logs under the home's logs/."""
    home = tmp_path_factory.mktemp("airflow-deployment")
    with (
        running_airflow(
            home, dags_folder=home / "dags", parallelism=16, timeout=180, settings=DEPLOYMENT_SETTINGS,
            pools={POOL: 4},
        ) as server,
        running_components(server, home / "logs", ("scheduler", "dag-processor", "triggerer")) as processes,
    ):  # fmt: skip
        yield Deployment(server, Path(server.env["AIRFLOW__CORE__DAGS_FOLDER"]), processes)
