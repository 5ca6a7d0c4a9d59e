"""The local Airflow home's environment, and the tail of its logs."""

from __future__ import annotations

from pathlib import Path

from dag_factory.local.airflow_home import airflow_env, is_migrated, log_tail, metadata_db_path


def test_airflow_env_points_everything_at_the_home(tmp_path: Path) -> None:
    env = airflow_env(tmp_path / "home", parallelism=6)
    assert env["AIRFLOW_HOME"] == str((tmp_path / "home").resolve())
    assert metadata_db_path(env) == (tmp_path / "home" / "airflow.db").resolve()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "6"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert "AIRFLOW__CORE__EXECUTION_API_SERVER_URL" not in env  # set by api_server()
    assert not is_migrated(env)


def test_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("\n".join(str(i) for i in range(100)))
    assert log_tail(log, 3) == "97\n98\n99"
    assert log_tail(tmp_path / "missing.log") == ""
