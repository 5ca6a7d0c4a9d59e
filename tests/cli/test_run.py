"""`dag-factory run` checks the notebook contract before it starts anything; `stop-server` stops the
Execution API runs leave up."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import psutil
import pytest
import yaml
from typer.testing import CliRunner

from dag_factory.cli.app import app
from dag_factory.cli.run import server_left_up
from dag_factory.local.execution_server import STATE_FILE, ExecutionApi, stop_execution_api
from dag_factory.settings import CACHE_DIR
from dag_factory.settings import PLATFORM as PLATFORM_ENV_VAR

CASES = Path(__file__).resolve().parents[1] / "validate" / "contract"
SHARED_CACHE = os.environ.get(CACHE_DIR)  # the test run's (tests/conftest.py): a migrated DB to copy


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The typo_parameter contract case, with a platform whose local root is under tmp_path."""
    monkeypatch.delenv(PLATFORM_ENV_VAR, raising=False)
    monkeypatch.setenv("DAG_FACTORY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(CASES / "typo_parameter", tmp_path / "project")
    platform = yaml.safe_load((CASES / "platform.yaml").read_text())
    platform["environments"]["local"]["root"] = str(tmp_path / "root")
    (tmp_path / "project" / "platform.yaml").write_text(yaml.safe_dump(platform))
    return tmp_path / "project" / "spec.yaml"


def test_run_refuses_a_spec_that_breaks_the_contract(project: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(project)])
    assert result.exit_code == 1, result.output
    assert "parameters.lookback_day: parameter 'lookback_day' (for every value) is not" in result.output
    assert "did you mean 'lookback_days'?" in result.output
    assert result.output.splitlines()[-1] == "not run: fix the problems above first"
    assert not (tmp_path / "root").exists(), "nothing was set up for a doomed run"


def test_no_notebooks_skips_the_contract(project: Path) -> None:
    """With --no-notebooks the run goes on to its own checks (here: an unknown environment)."""
    result = CliRunner().invoke(app, ["run", str(project), "--no-notebooks", "--env", "nowhere"])
    assert result.exit_code == 2  # a usage error
    assert "is not declared" not in result.output
    assert "--env 'nowhere' is not an environment of" in result.output


def _starting(project: Path, start: dt.date) -> Path:
    spec = yaml.safe_load(project.read_text())
    spec["start_date"] = start
    project.write_text(yaml.safe_dump(spec))
    return project


def test_a_date_before_start_date_is_refused_before_anything_runs(project: Path, tmp_path: Path) -> None:
    """Airflow runs no task of a date before start_date and would still say "success": refused at once."""
    result = CliRunner().invoke(app, ["run", str(project), "--no-notebooks", "--date", "2026-01-04"])
    assert result.exit_code == 1, result.output
    assert " ".join(result.output.split()) == (
        "not run: --date 2026-01-04 is before the spec's start_date 2026-01-05: Airflow runs no task of an "
        "earlier date. Pass --date 2026-01-05 or later (or leave --date out: today), or move start_date."
    )
    assert not (tmp_path / "root").exists(), "nothing was set up for a run that would run nothing"


def test_run_without_date_runs_today(project: Path) -> None:
    """No --date is today, never the demo's date: a spec starting tomorrow is refused for today."""
    today = dt.date.today()
    tomorrow = today + dt.timedelta(days=1)
    result = CliRunner().invoke(app, ["run", str(_starting(project, tomorrow)), "--no-notebooks"])
    assert result.exit_code == 1, result.output
    assert f"--date {today} is before the spec's start_date {tomorrow}" in " ".join(result.output.split())
    assert "(default: today)" in CliRunner().invoke(app, ["run", "--help"]).output


def test_stop_server_says_when_none_runs_and_makes_nothing(project: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["stop-server", str(project)])
    home = (tmp_path / "root" / "airflow").resolve()
    assert (result.exit_code, result.output) == (0, f"no Execution API runs for {home}\n")
    assert not (tmp_path / "root").exists()
    missing = CliRunner().invoke(app, ["stop-server", "nowhere"])
    assert missing.exit_code == 2 and "error: no such file or folder: nowhere" in missing.output


@pytest.mark.integration
def test_stop_server_stops_the_execution_api_a_run_left_up(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found as `run` finds it (the platform file near the spec or the working folder); gone when it
    returns."""
    from dag_factory.local.airflow_home import prepare_airflow_home
    from dag_factory.local.execution_server import execution_api_env

    if SHARED_CACHE is not None:
        monkeypatch.setenv(CACHE_DIR, SHARED_CACHE)
    home = (tmp_path / "root" / "airflow").resolve()
    try:
        execution_api_env(prepare_airflow_home(home))  # as a run starts it
        server = json.loads((home / STATE_FILE).read_text())
        monkeypatch.chdir(project.parent)  # where the platform file is found without naming the spec
        result = CliRunner().invoke(app, ["stop-server"])
        assert result.exit_code == 0, result.output
        stopped = f"stopped the Execution API at {server['url']} (pid {server['pid']}) of {home}\n"
        assert result.output == stopped
        assert _exited(server["pid"]) and not (home / STATE_FILE).exists()
        again = CliRunner().invoke(app, ["stop-server", str(project)])
        assert (again.exit_code, again.output) == (0, f"no Execution API runs for {home}\n")
    finally:
        stop_execution_api(home)


def _exited(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # its new parent reaps it soon
    except psutil.NoSuchProcess:
        return True


def test_the_line_ending_a_run_says_how_long_the_server_stays_up() -> None:
    server = ExecutionApi("http://127.0.0.1:41234/execution/", 4321, 600.0)
    assert server_left_up(server, "dag-factory stop-server") == (
        "Execution API left up for the next run: http://127.0.0.1:41234/execution/ (pid 4321); "
        "it stops after 10 min without a request, or now with: dag-factory stop-server"
    )
    assert "it stops after 3 s without" in server_left_up(ExecutionApi("u", 1, 3.0000000000000004), "x")
