"""A spec scheduled on another spec's delivery runs after it, in a real scheduler run.

Airflow on a throwaway SQLite home: api-server, `airflow scheduler` (LocalExecutor) and
`airflow dag-processor` as separate processes, the generated DAG files of two local-backend specs.
The upstream (the demo job, one value) delivers into the DuckDB warehouse; the downstream spec is
scheduled on that table's asset. Only the upstream is triggered (REST API); the downstream run must
be created by the asset event.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml

from dag_factory.airflow.dag_files import dag_file_name, dag_file_source
from dag_factory.load.specs import load_platform, load_spec
from dag_factory.local.airflow_home import (
    api_server,
    child_env,
    log_tail,
    metadata_db_path,
    prepare_airflow_home,
    stop_process_group,
)
from dag_factory.ops.deploy import deploy_project
from dag_factory.settings import ENV

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
WAIT_S = 900.0  # two local jobs (venv + papermill) on a shared 2-core machine


def _projects(tmp_path: Path) -> tuple[Path, Path, Path, str]:
    """Platform, upstream spec (the demo job), downstream spec, and the asset they share."""
    platform = yaml.safe_load((ROOT / "project_configs" / "platform.yaml").read_text())
    platform["environments"]["local"]["root"] = str(tmp_path / "root")
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(platform))
    shutil.copytree(ROOT / "examples" / "churn-demo", tmp_path / "churn-demo")
    upstream = yaml.safe_load((ROOT / "project_configs" / "churn-demo.yaml").read_text())
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


def _start(command: str, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [AIRFLOW, command],
            env=child_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


@pytest.fixture
def components(tmp_path: Path) -> Iterator[tuple[str, Path, Path, str]]:
    """(api url, metadata DB, logs folder, shared asset) with scheduler and dag-processor running."""
    platform, upstream, downstream, asset = _projects(tmp_path)
    loaded_platform = load_platform(platform)
    dags = tmp_path / "dags"
    dags.mkdir()
    for spec in (upstream, downstream):
        deploy_project(load_spec(spec, loaded_platform), "local")
        source = dag_file_source(spec, dags, env="local", platform=platform, only=["fr"])
        (dags / dag_file_name(spec)).write_text(source)
    # every component is configured for the environment the DAGs were built for
    env = {
        **prepare_airflow_home(tmp_path / "home", dags_folder=dags, parallelism=4),
        ENV: "local",
        # SQLite and several developers' runs on 2 cores: the Execution API answers slowly at times
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
    }
    logs = tmp_path / "home" / "logs"
    with api_server(env, timeout=240) as server:
        procs = [_start(c, server.env, logs / f"{c}.log") for c in ("scheduler", "dag-processor")]
        try:
            yield server.url, metadata_db_path(env), logs, asset
        finally:
            for proc in procs:
                stop_process_group(proc)


def _rows(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
        return con.execute(sql, params).fetchall()


def _post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return dict(json.load(response))


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
        with urllib.request.urlopen(f"{api}/api/v2/dags/{dag_id}", timeout=30) as response:
            return bool(response.status == 200)
    except urllib.error.URLError:
        return False


def test_downstream_spec_runs_after_the_upstream_delivery(components: tuple[str, Path, Path, str]) -> None:
    api, db, logs, asset = components
    _wait_for(
        "both DAGs parsed", lambda: all(_dag_parsed(api, d) for d in ("churn-demo", "churn-followup")), logs
    )
    run = _post(f"{api}/api/v2/dags/churn-demo/dagRuns", {"logical_date": "2026-01-05T00:00:00Z"})

    finished = "SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ? AND state IN ('success', 'failed')"
    [(state,)] = _wait_for(
        "the upstream run", lambda: _rows(db, finished, "churn-demo", run["dag_run_id"]), logs
    )
    states = "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?"
    assert state == "success", _rows(db, states, "churn-demo", run["dag_run_id"])
    [(delivered_at,)] = _rows(
        db,
        "SELECT end_date FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?",
        "churn-demo",
        run["dag_run_id"],
        "fr.deliver_0_postgres",
    )
    # the delivery's outlet recorded an event on the asset the downstream spec names
    events = "SELECT a.uri FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE e.source_dag_id = ?"
    assert (asset,) in _rows(db, events, "churn-demo")

    downstream = (
        "SELECT run_type, state, start_date FROM dag_run WHERE dag_id = ? AND state IN ('success', 'failed')"
    )
    [(run_type, state, started_at)] = _wait_for(
        "the asset-triggered downstream run", lambda: _rows(db, downstream, "churn-followup"), logs
    )
    assert run_type == "asset_triggered"
    assert state == "success"
    assert dt.datetime.fromisoformat(str(started_at)) >= dt.datetime.fromisoformat(str(delivered_at))
