"""The environment a DAG is built for is never guessed, and every task checks it before it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dag_factory.airflow.dag_files import write_dag_file
from dag_factory.airflow.environment import EnvironmentUnknown, check_environment, current_env
from tests.paths import REPO

CONFIGS = REPO / "project_configs"


def _import_dag_file(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Parse the generated DAG file of churn-demo in a fresh interpreter, as a DAG processor would."""
    dag_file = write_dag_file(CONFIGS / "churn-demo.yaml", tmp_path / "dags")
    script = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(dag_file)!r})\n"
        "for message in bag.import_errors.values(): print('IMPORT ERROR', message.splitlines()[-1])\n"
        "for dag in bag.dags.values(): print('DAG', dag.dag_id, sorted(dag.tags))\n"
    )
    clean = {
        k: v for k, v in os.environ.items() if k != "DAG_FACTORY_ENV" and not k.startswith("AIRFLOW_VAR_")
    }
    return subprocess.run(
        [sys.executable, "-c", script], env={**clean, **env}, cwd=REPO, capture_output=True, text=True
    )


@pytest.mark.integration  # Airflow's DagBag in a process of its own
def test_unset_environment_is_an_import_error_that_says_how_to_set_it(tmp_path: Path) -> None:
    done = _import_dag_file(tmp_path)
    assert "DAG churn-demo" not in done.stdout, "built for a guessed environment"
    assert (
        "IMPORT ERROR dag_factory.airflow.environment.EnvironmentUnknown: the dag-factory environment is "
        "not set: set $DAG_FACTORY_ENV on every Airflow component (scheduler, dag-processor, triggerer, "
        "workers), e.g. DAG_FACTORY_ENV=prod, or the Airflow Variable dag_factory_env (`airflow variables "
        "set dag_factory_env prod`, or AIRFLOW_VAR_DAG_FACTORY_ENV=prod)"
    ) in done.stdout, done.stdout + done.stderr


@pytest.mark.integration  # Airflow's DagBag in a process of its own
def test_environment_from_the_variable_and_recorded_on_the_dag(tmp_path: Path) -> None:
    done = _import_dag_file(tmp_path, AIRFLOW_VAR_DAG_FACTORY_ENV="preprod")
    assert "DAG churn-demo ['dag-factory', 'demo', 'env:preprod']" in done.stdout, done.stdout + done.stderr


@pytest.mark.integration  # Airflow's DagBag in a process of its own
def test_a_variable_that_cannot_be_read_is_reported_as_that_failure(tmp_path: Path) -> None:
    backend = "tests.airflow.unreachable_secrets.Unreachable"
    done = _import_dag_file(tmp_path, AIRFLOW__SECRETS__BACKEND=backend)
    assert (
        "IMPORT ERROR dag_factory.airflow.environment.EnvironmentUnknown: could not read the Airflow "
        "Variable dag_factory_env (Unreachable: ConnectionError: vault.internal:8200 unreachable); fix the "
        "secrets backend, or set $DAG_FACTORY_ENV"
    ) in done.stdout, done.stdout + done.stderr


def test_the_environment_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAG_FACTORY_ENV", "prod")
    monkeypatch.setenv("AIRFLOW_VAR_DAG_FACTORY_ENV", "preprod")
    assert current_env() == "prod"
    monkeypatch.setenv("DAG_FACTORY_ENV", " ")
    assert current_env() == "preprod"
    monkeypatch.delenv("AIRFLOW_VAR_DAG_FACTORY_ENV")
    with pytest.raises(EnvironmentUnknown):
        current_env()


def test_check_environment_fails_a_task_on_a_worker_of_another_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("DAG_FACTORY_ENV", "prod")
    check_environment("prod")
    with pytest.raises(AirflowFailException, match="built for environment 'local', but this worker is "
                       "configured for 'prod': the task would run on the wrong backend"):  # fmt: skip
        check_environment("local")
    monkeypatch.delenv("DAG_FACTORY_ENV")
    with pytest.raises(AirflowFailException, match="built for environment 'prod', but this worker has none"):
        check_environment("prod")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests.servers.airflow import running_airflow

    with running_airflow(tmp_path_factory.mktemp("airflow-home"), parallelism=8, timeout=180) as running:
        yield running


@pytest.mark.integration
def test_a_worker_of_another_environment_runs_nothing(server: object, tmp_path: Path) -> None:
    """A DAG file pinned to `local`, a worker configured for `preprod`: every task fails before it runs,
    no work directory is made, and the log says why."""
    import yaml

    from dag_factory.local.execute import run_dag

    platform = yaml.safe_load((CONFIGS / "platform.yaml").read_text())
    platform["environments"]["local"]["root"] = str(tmp_path / "root")
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(platform))
    spec = (CONFIGS / "churn-demo.yaml").read_text().replace("../examples", str(REPO / "examples"))
    (tmp_path / "churn-demo.yaml").write_text(spec)
    dag_file = write_dag_file(
        tmp_path / "churn-demo.yaml", tmp_path / "dags", env="local", platform=tmp_path / "platform.yaml",
        only=["de"],
    )  # fmt: skip
    started = time.monotonic()
    result = run_dag(
        dag_file,
        "churn-demo",
        logical_date=datetime(2026, 1, 5, tzinfo=UTC),
        env={**server.env, "DAG_FACTORY_ENV": "preprod"},  # type: ignore[attr-defined]
        timeout=600,
    )
    assert result.state == "failed"
    create = result.ti("de.create_instance")
    assert create.state == "failed" and create.try_number == 1, "failed at once, not retried"
    assert "built for environment 'local', but this worker is configured for 'preprod'" in create.error
    assert not (tmp_path / "root" / "work").exists(), "a task ran anyway"
    print(f"mismatched run took {time.monotonic() - started:.0f}s")


def test_dags_command_pins_a_known_environment(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dag_factory.cli.app import app

    typo = CliRunner().invoke(app, ["dags", str(CONFIGS), "--output", str(tmp_path), "--env", "prood"])
    assert typo.exit_code == 2 and "(did you mean 'prod'?)" in typo.output
    assert not list(tmp_path.glob("*.py"))
    pinned = CliRunner().invoke(app, ["dags", str(CONFIGS), "--output", str(tmp_path), "--env", "prod"])
    assert pinned.exit_code == 0, pinned.output
    assert (tmp_path / "churn_demo.py").read_text().endswith('churn-demo.yaml", env=\'prod\')\n')
