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
    ExecutionApi,
    execution_api_env,
    running_execution_api,
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


def exited(pid: int) -> bool:
    """True when ``pid`` runs no more, now (a zombie its new parent has yet to reap has exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


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
    state = json.loads((tmp_path / "home" / STATE_FILE).read_text())
    assert running_execution_api(tmp_path / "home") == ExecutionApi(state["url"], state["pid"], 600.0)
    stopped = stop_execution_api(tmp_path / "home")
    assert stopped == ExecutionApi(state["url"], state["pid"], 600.0)
    assert exited(state["pid"]) and not (tmp_path / "home" / STATE_FILE).exists()
    assert running_execution_api(tmp_path / "home") is None
    assert stop_execution_api(tmp_path / "home") is None  # nothing recorded: nothing to do


def test_a_new_home_is_a_copy_of_the_cached_migrated_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first home of an Airflow version runs `airflow db migrate` and fills the cache; the next is
    a copy of it (no migration run) that an Execution API serves from."""
    from dag_factory.local import airflow_home

    monkeypatch.setenv("DAG_FACTORY_CACHE_DIR", str(tmp_path / "cache"))
    migrations: list[object] = []
    real_run = airflow_home.subprocess.run

    def counting_run(argv: list[str], **kwargs: object) -> object:
        if argv[1:3] == ["db", "migrate"]:
            migrations.append(argv[1:3])
        return real_run(argv, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(airflow_home.subprocess, "run", counting_run)
    first = prepare_airflow_home(tmp_path / "first")
    assert migrations == [["db", "migrate"]]
    templates = list((tmp_path / "cache" / "airflow-db").glob("airflow-*.db"))
    assert [t.name for t in templates] == [f"airflow-{airflow_home.version('apache-airflow')}.db"]

    second = prepare_airflow_home(tmp_path / "second")
    assert migrations == [["db", "migrate"]]  # seeded, not migrated
    assert airflow_home.is_migrated(second) and airflow_home.metadata_db_path(second) != (
        airflow_home.metadata_db_path(first)
    )
    served, _ = execution_api_env(second)
    assert _healthy(served[EXECUTION_API_VAR])
    stop_execution_api(tmp_path / "second")

    monkeypatch.setenv("DAG_FACTORY_CACHE_DIR", "off")  # no cache: every home migrates
    prepare_airflow_home(tmp_path / "third")
    assert migrations == [["db", "migrate"], ["db", "migrate"]]
