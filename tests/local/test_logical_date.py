"""A run without a logical date (REST API `"logical_date": null`, asset-triggered runs) works: its job
date is the day of its run_after, and that is what the notebooks receive and the delivery partitions by."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from dag_factory.local.run import prepare_job, run_local, summarize
from tests.local.projects import demo_project

pytestmark = pytest.mark.integration


def test_run_without_a_logical_date(tmp_path: Path) -> None:
    spec, platform = demo_project(tmp_path)
    job = prepare_job(spec, "local", platform, ["de"])
    before = dt.datetime.now(dt.UTC).date()
    result = run_local(job, None, False, Console(quiet=True))
    after = dt.datetime.now(dt.UTC).date()
    assert result.state == "success", result.error
    assert "_" in result.run_id.removeprefix("manual__"), "a run without a logical date has Airflow's suffix"
    (row,) = summarize(job, result)
    cells = json.loads(Path(row.executed_notebook).read_text())["cells"]
    injected = "".join(next(c for c in cells if "injected-parameters" in c["metadata"]["tags"])["source"])
    job_date = next(d for d in {before, after} if f'logical_date = "{d.isoformat()}"' in injected)
    with duckdb.connect(str(tmp_path / "root" / "warehouse.duckdb"), read_only=True) as con:
        dates = con.execute("SELECT DISTINCT logical_date FROM analytics.churn_scores").fetchall()
    assert dates == [(job_date,)]
