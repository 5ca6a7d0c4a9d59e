"""`dag-factory run` end to end on the local backend: real Airflow, papermill, DuckDB."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml
from rich.console import Console

from dag_factory.local.job import prepare_job, run_local, summarize

ROOT = Path(__file__).resolve().parents[2]
DATE = dt.date(2026, 1, 5)


def _project(tmp_path: Path, notebook_params: dict[str, object] | None = None) -> tuple[Path, Path]:
    """The demo spec and a platform whose local root is under tmp_path."""
    platform = yaml.safe_load((ROOT / "project_configs" / "platform.yaml").read_text())
    platform["environments"]["local"]["root"] = str(tmp_path / "root")
    spec = yaml.safe_load((ROOT / "project_configs" / "churn-demo.yaml").read_text())
    shutil.copytree(ROOT / "examples" / "churn-demo", tmp_path / "churn-demo")  # project_dir stays
    spec["project_dir"] = "churn-demo"  # inside the spec's repository (here: tmp_path)
    if notebook_params:
        spec["notebooks"][1]["parameters"].update(notebook_params)
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(platform))
    (tmp_path / "churn-demo.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "churn-demo.yaml", tmp_path / "platform.yaml"


def _run(spec: Path, platform: Path, only: list[str], keep: bool = False):  # type: ignore[no-untyped-def]
    job = prepare_job(spec, "local", platform, only)
    result = run_local(job, DATE, keep, Console(quiet=True))
    return job, result, {row.value: row for row in summarize(job, result)}


def _scores(root: Path) -> list[tuple[str, int]]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(
            "SELECT country, count(*) FROM analytics.churn_scores"
            " WHERE logical_date = ? GROUP BY 1 ORDER BY 1",
            [DATE],
        ).fetchall()


@pytest.mark.integration
def test_demo_job_delivers_archives_and_cleans_up(tmp_path: Path) -> None:
    spec, platform = _project(tmp_path)
    _, result, rows = _run(spec, platform, ["de", "fr"])
    root = tmp_path / "root"
    assert result.state == "success", result.log_path
    assert {v: r.status for v, r in rows.items()} == {"de": "success", "fr": "success"}
    assert _scores(root) == [("de", 800), ("fr", 500)]  # de has its own n_customers
    assert rows["de"].rows_delivered == 801  # 800 scores + 1 metrics row
    # executed notebooks archived with the injected parameters
    executed = Path(rows["fr"].executed_notebook)
    assert executed.is_file() and executed.parent.name == "fr"
    cells = json.loads(executed.read_text())["cells"]
    injected = next(c for c in cells if "injected-parameters" in c["metadata"].get("tags", []))
    source = "".join(injected["source"])
    for line in ['country = "fr"', "max_depth = 4", 'env = "local"', 'logical_date = "2026-01-05"']:
        assert line in source
    assert f'run_id = "{result.run_id}"' in source
    # work directories removed like instances
    assert not any((root / "work").rglob("venv"))
    # fan-out values overlapped in time (not one at a time)
    de, fr = result.ti("de.nb_02_train"), result.ti("fr.nb_02_train")
    assert de.start < fr.end and fr.start < de.end
    # a re-run of the same logical date replaces, never duplicates
    _, again, _ = _run(spec, platform, ["de"])
    assert again.state == "success"
    assert _scores(root) == [("de", 800), ("fr", 500)]


@pytest.mark.integration
def test_failing_notebook_fails_its_value_only_and_keeps_its_error(tmp_path: Path) -> None:
    spec, platform = _project(tmp_path, {"fail_for": "fr"})
    _, result, rows = _run(spec, platform, ["de", "fr"])
    assert result.state == "failed"
    assert rows["de"].status == "success" and rows["fr"].status == "failed"
    assert "RuntimeError: forced failure for fr" in rows["fr"].error
    assert rows["fr"].error.startswith("cell ")
    executed = Path(rows["fr"].executed_notebook)
    assert executed.name == "02_train.ipynb" and "forced failure for fr" in executed.read_text()
    assert result.ti("fr.deliver_0_postgres").state == "upstream_failed"
    assert result.ti("fr.delete_instance").state == "success"
    assert _scores(tmp_path / "root") == [("de", 800)]
    assert not any((tmp_path / "root" / "work").rglob("venv"))


@pytest.mark.integration
def test_keep_leaves_the_work_directory_for_debugging(tmp_path: Path) -> None:
    spec, platform = _project(tmp_path)
    _, result, _ = _run(spec, platform, ["nl"], keep=True)
    assert result.state == "success"
    kept = list((tmp_path / "root" / "work").rglob("nl"))
    assert kept and (kept[0] / "venv" / "bin" / "papermill").exists()


@pytest.mark.integration
def test_ctrl_c_stops_the_run_and_removes_work_directories(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    spec, platform = _project(tmp_path)
    command = [sys.executable, "-m", "dag_factory.cli.app", "run", str(spec), "--platform", str(platform)]
    proc = subprocess.Popen(
        [*command, "--only", "de"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path
    )
    work = tmp_path / "root" / "work"
    deadline = time.monotonic() + 300
    while not any(work.rglob("venv")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert any(work.rglob("venv")), "the run never created its work directory"
    os.kill(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode != 0
    assert b"interrupted" in output
    assert not any(work.rglob("venv"))
