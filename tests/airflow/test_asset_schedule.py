"""A spec scheduled on another spec's delivery runs after it, in a real scheduler run.

Airflow on a throwaway SQLite home: api-server, `airflow scheduler` (LocalExecutor) and
`airflow dag-processor` as separate processes, the generated DAG files of two local-backend specs.
The upstream (the demo job, two values) delivers into the DuckDB warehouse; the downstream spec is
scheduled on that table's asset. Only the upstream is triggered (REST API); the downstream run must
be created by the asset event, once, after both values landed. One cluster and one upstream run
for the module (a fixture); the tests read what it left in the metadata DB and the warehouse.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import yaml

from dag_factory.airflow.dag_files import dag_file_name, dag_file_source
from dag_factory.load.specs import load_platform, load_spec
from dag_factory.local.airflow_home import (
    log_tail,
    metadata_db_path,
)
from dag_factory.ops.deploy import deploy_project
from dag_factory.settings import ENV
from tests.paths import REPO
from tests.servers.airflow import running_airflow, running_components
from tests.servers.airflow_api import AirflowApi

pytestmark = pytest.mark.integration

WAIT_S = 900.0  # two local jobs (venv + papermill) on a shared 2-core machine
VALUES = ["de", "fr"]
LOGICAL_DATE = "2026-01-05"


def _projects(tmp_path: Path) -> tuple[Path, Path, Path, str]:
    """Platform, upstream spec (the demo job), downstream spec, and the asset they share."""
    platform = yaml.safe_load((REPO / "project_configs" / "platform.yaml").read_text())
    platform["environments"]["local"]["root"] = str(tmp_path / "root")
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(platform))
    shutil.copytree(REPO / "examples" / "churn-demo", tmp_path / "churn-demo")
    upstream = yaml.safe_load((REPO / "project_configs" / "churn-demo.yaml").read_text())
    upstream |= {"project_dir": "churn-demo", "schedule": None}  # runs only when triggered
    asset = f"duckdb:{tmp_path / 'root' / 'warehouse.duckdb'}/analytics.churn_scores"
    downstream = upstream | {
        "project": "churn-followup",
        "schedule": {"assets": [asset]},
        "notebooks": upstream["notebooks"][:1],
        "deliver": [],
    }
    for name, spec in (("churn-demo.yaml", upstream), ("churn-followup.yaml", downstream)):
        (tmp_path / name).write_text(yaml.safe_dump(spec, sort_keys=False))
    return tmp_path / "platform.yaml", tmp_path / "churn-demo.yaml", tmp_path / "churn-followup.yaml", asset


@pytest.fixture(scope="module")
def components(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path, str, Path]]:
    """(api url, metadata DB, logs folder, shared asset, DuckDB warehouse) with scheduler and
    dag-processor running."""
    tmp_path = tmp_path_factory.mktemp("asset-schedule")
    platform, upstream, downstream, asset = _projects(tmp_path)
    loaded_platform = load_platform(platform)
    dags = tmp_path / "dags"
    dags.mkdir()
    for spec, only in ((upstream, VALUES), (downstream, ["fr"])):
        deploy_project(load_spec(spec, loaded_platform), "local")
        source = dag_file_source(spec, dags, env="local", platform=platform, only=only)
        (dags / dag_file_name(spec)).write_text(source)
    settings = {
        # every component is configured for the environment the DAGs were built for
        ENV: "local",
        # SQLite and several developers' runs on 2 cores: the Execution API answers slowly at times
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
    }
    home = tmp_path / "home"
    logs = home / "logs"
    with (
        running_airflow(home, dags_folder=dags, parallelism=4, timeout=240, settings=settings) as server,
        running_components(server, logs),
    ):
        yield server.url, metadata_db_path(server.env), logs, asset, tmp_path / "root" / "warehouse.duckdb"


def _rows(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
        return con.execute(sql, params).fetchall()


def _wait_for(what: str, check, logs: Path):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(2)
    tails = "\n".join(f"--- {p.name}\n{log_tail(p)}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def _dag_parsed(api: str, dag_id: str) -> bool:
    try:
        status, _ = AirflowApi(api, timeout=30).answer("GET", f"/api/v2/dags/{dag_id}")
        return status == 200
    except urllib.error.URLError:
        return False


@dataclass(frozen=True)
class Runs:
    """What the one upstream run left, once the scheduler has dealt with every asset event it made."""

    db: Path
    warehouse: Path
    asset: str
    run_id: str
    state: str


FINISHED = "SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ? AND state IN ('success', 'failed')"
DOWNSTREAM_RUNS = "SELECT run_type, state, start_date FROM dag_run WHERE dag_id = ?"
# the asset's events no dag run has consumed, and the consumer runs the scheduler still has to create
UNCONSUMED = (
    "SELECT e.id FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = ? AND e.id NOT IN"
    " (SELECT event_id FROM dagrun_asset_event)"
)
QUEUED = "SELECT q.asset_id FROM asset_dag_run_queue q WHERE q.target_dag_id = ?"


@pytest.fixture(scope="module")
def runs(components: tuple[str, Path, Path, str, Path]) -> Runs:
    """Trigger the upstream once; wait until it and the asset-triggered downstream run are over and
    every asset event of the table is consumed by a run, none queued for another."""
    api, db, logs, asset, warehouse = components
    _wait_for(
        "both DAGs parsed", lambda: all(_dag_parsed(api, d) for d in ("churn-demo", "churn-followup")), logs
    )
    body = {"logical_date": f"{LOGICAL_DATE}T00:00:00Z"}
    run = AirflowApi(api).call("POST", "/api/v2/dags/churn-demo/dagRuns", body)
    run_id = str(run["dag_run_id"])
    [(state,)] = _wait_for("the upstream run", lambda: _rows(db, FINISHED, "churn-demo", run_id), logs)
    if state == "success":
        _wait_for(
            "the asset-triggered downstream run",
            lambda: _rows(db, DOWNSTREAM_RUNS + " AND state IN ('success', 'failed')", "churn-followup"),
            logs,
        )
        _wait_for(
            "the scheduler to consume every asset event",
            lambda: not _rows(db, UNCONSUMED, asset) and not _rows(db, QUEUED, "churn-followup"),
            logs,
        )
    return Runs(db, warehouse, asset, run_id, str(state))


def _upstream_succeeded(runs: Runs) -> None:
    states = "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?"
    assert runs.state == "success", _rows(runs.db, states, "churn-demo", runs.run_id)


def test_downstream_spec_runs_after_the_upstream_delivery(runs: Runs) -> None:
    _upstream_succeeded(runs)
    ended = "SELECT task_id, end_date FROM task_instance WHERE dag_id = ? AND run_id = ?"
    end = {str(task): str(at) for task, at in _rows(runs.db, ended, "churn-demo", runs.run_id)}
    # the publish task's outlet recorded an event on the asset the downstream spec names
    events = "SELECT a.uri FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE e.source_dag_id = ?"
    assert (runs.asset,) in _rows(runs.db, events, "churn-demo")
    [(run_type, state, started_at)] = _rows(runs.db, DOWNSTREAM_RUNS, "churn-followup")
    assert run_type == "asset_triggered"
    assert state == "success"
    started = dt.datetime.fromisoformat(str(started_at))
    # after every value's delivery, and after the one event for the run
    for task in (*(f"{v}.deliver_churn_scores" for v in VALUES), "publish_churn_scores"):
        assert started >= dt.datetime.fromisoformat(end[task]), task


def test_downstream_runs_once_after_every_value_delivered(runs: Runs) -> None:
    """One upstream run of two values: one event on the table, its extra each value's row count (as in
    the warehouse), and so one downstream run, not one per value."""
    _upstream_succeeded(runs)
    with duckdb.connect(str(runs.warehouse), read_only=True) as con:
        counts = con.execute(
            "SELECT country, count(*) FROM analytics.churn_scores"
            " WHERE logical_date = ? GROUP BY 1 ORDER BY 1",
            [dt.date.fromisoformat(LOGICAL_DATE)],
        ).fetchall()
    assert counts == [("de", 800), ("fr", 500)]  # de has its own n_customers
    events = (
        "SELECT e.source_task_id, e.source_run_id, e.extra"
        " FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = ?"
    )
    [(task_id, run_id, extra)] = _rows(runs.db, events, runs.asset)
    assert (task_id, run_id) == ("publish_churn_scores", runs.run_id)
    assert json.loads(str(extra)) == {"values": dict(counts), "rows": 1300, "run_id": runs.run_id}
    assert [row[:2] for row in _rows(runs.db, DOWNSTREAM_RUNS, "churn-followup")] == [
        ("asset_triggered", "success")
    ]
    # that one run consumed that one event
    consumed = (
        "SELECT r.dag_id FROM dagrun_asset_event c JOIN dag_run r ON r.id = c.dag_run_id"
        " JOIN asset_event e ON e.id = c.event_id JOIN asset a ON a.id = e.asset_id WHERE a.uri = ?"
    )
    assert _rows(runs.db, consumed, runs.asset) == [("churn-followup",)]
