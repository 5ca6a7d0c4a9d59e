"""The local home's Execution API: started once, reused by later runs, replaced when stale, idle-stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import urllib.request
from pathlib import Path

import psutil
import pytest

from dag_factory.local.airflow_home import AirflowHomeError, prepare_airflow_home
from dag_factory.local.execution_server import (
    EXECUTION_API_VAR,
    STATE_FILE,
    execution_api_env,
    main,
    stop_execution_api,
    stop_unless_kept,
)

pytestmark = pytest.mark.integration


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(url + "health", timeout=10) as response:
        return bool(response.status == 200)


def _gone(pid: int, timeout: float = 60) -> bool:
    try:
        psutil.Process(pid).wait(timeout=timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_started_once_then_reused_and_replaced_when_dead(tmp_path: Path) -> None:
    env = prepare_airflow_home(tmp_path / "home")
    first, reused = execution_api_env(env)
    assert not reused and _healthy(first[EXECUTION_API_VAR])
    state = json.loads((tmp_path / "home" / STATE_FILE).read_text())
    assert state["url"] == first[EXECUTION_API_VAR]
    server = psutil.Process(state["pid"])
    assert server.ppid() != os.getpid()  # detached: it outlives the run that started it

    again, reused = execution_api_env(env)
    assert reused and again[EXECUTION_API_VAR] == first[EXECUTION_API_VAR]

    os.kill(state["pid"], signal.SIGKILL)
    assert _gone(state["pid"])
    replaced, reused = execution_api_env(env)
    assert not reused and _healthy(replaced[EXECUTION_API_VAR])
    assert json.loads((tmp_path / "home" / STATE_FILE).read_text())["pid"] != state["pid"]


def test_a_home_made_again_gets_a_new_server_and_the_old_one_stops(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = prepare_airflow_home(home)
    execution_api_env(env)
    old = json.loads((home / STATE_FILE).read_text())
    saved = (home / STATE_FILE).read_text()
    shutil.rmtree(home)  # `make clean`: the old server still runs, on a metadata DB that is gone
    env = prepare_airflow_home(home)
    (home / STATE_FILE).write_text(saved)  # even if its record survived
    new, reused = execution_api_env(env)
    assert not reused and _healthy(new[EXECUTION_API_VAR])
    assert _gone(old["pid"])


def test_idle_server_stops_by_itself_and_off_stops_it_after_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = prepare_airflow_home(tmp_path / "home")
    monkeypatch.setenv("DAG_FACTORY_LOCAL_API_IDLE_MINUTES", "0.05")  # 3 s without a request
    execution_api_env(env)
    pid = json.loads((tmp_path / "home" / STATE_FILE).read_text())["pid"]
    assert _gone(pid, timeout=120)
    assert "no request for 3 s: stopping" in (tmp_path / "home" / "logs" / "execution-api.log").read_text()

    monkeypatch.setenv("DAG_FACTORY_LOCAL_API_IDLE_MINUTES", "off")
    execution_api_env(env)
    pid = json.loads((tmp_path / "home" / STATE_FILE).read_text())["pid"]
    stop_unless_kept(env)
    assert _gone(pid) and not (tmp_path / "home" / STATE_FILE).exists()


def test_stop_and_a_bad_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = prepare_airflow_home(tmp_path / "home")
    monkeypatch.setenv("DAG_FACTORY_LOCAL_API_IDLE_MINUTES", "ten")
    with pytest.raises(
        AirflowHomeError, match="DAG_FACTORY_LOCAL_API_IDLE_MINUTES='ten': not a number of minutes"
    ):
        execution_api_env(env)
    monkeypatch.delenv("DAG_FACTORY_LOCAL_API_IDLE_MINUTES")
    execution_api_env(env)
    pid = json.loads((tmp_path / "home" / STATE_FILE).read_text())["pid"]
    assert main(["stop", str(tmp_path / "home")]) == 0  # what `make clean` runs
    assert _gone(pid) and not (tmp_path / "home" / STATE_FILE).exists()
    stop_execution_api(tmp_path / "home")  # nothing recorded: nothing to do
