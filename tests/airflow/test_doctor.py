"""The doctor's checks that run beside Airflow (dag_factory.airflow.doctor) and need no server: the
extras the targets need, the targets of the specs beside the platform file, the environment setting.
Against a deployment: tests/ops/test_doctor.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dag_factory import DISTRIBUTION
from dag_factory.airflow import doctor
from dag_factory.extras import Installed
from dag_factory.load.specs import load_platform
from tests.job_platform import write_job_platform
from tests.paths import REPO


def test_a_missing_or_out_of_range_requirement_fails_its_extra_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requirements = {
        "postgres": [Installed("apache-airflow-providers-postgres", ">=7.0.0,<8", None)],
        "local": [Installed("duckdb", ">=1.4,<3", "0.9.2"), Installed("psutil", ">=7.0,<8", "7.2.2")],
        "snowflake": [Installed("apache-airflow-providers-snowflake", ">=6.12.1,<7", "6.20.0")],
    }
    monkeypatch.setattr(doctor, "extra_requirements", requirements.__getitem__)
    assert [c.line for c in doctor.check_extras(["postgres", "local", "snowflake"], "targets: x")] == [
        "FAIL  extra [postgres] (targets: x)  (apache-airflow-providers-postgres not installed: "
        f"pip install '{DISTRIBUTION}[postgres]')",
        "FAIL  extra [local] (targets: x)  (duckdb 0.9.2 not in >=1.4,<3: "
        f"pip install '{DISTRIBUTION}[local]')",
        "ok    extra [snowflake] (targets: x)",
    ]


def test_the_targets_are_the_specs_beside_the_platform_file_in_that_environment(tmp_path: Path) -> None:
    for name in ("platform.yaml", "churn-model.yaml"):
        shutil.copy(REPO / "project_configs" / name, tmp_path / name)
    (tmp_path / "broken.yaml").write_text("version: 1\nproject: broken\n")
    targets, check = doctor.deployed_targets(load_platform(tmp_path / "platform.yaml"), "prod")
    assert check.line == (
        f"FAIL  specs in {tmp_path}  (invalid: broken.yaml: `dag-factory validate {tmp_path}` shows why)"
    )
    assert sorted(set(targets)) == [doctor.Target("snowflake", "snowflake", None)]


def test_the_environment_is_what_the_dag_files_would_build_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAG_FACTORY_ENV", "preprod")
    assert (
        doctor.check_environment(None)[0].line
        == "ok    environment setting  (preprod, from $DAG_FACTORY_ENV)"
    )
    check, env = doctor.check_environment("prod")
    assert env == "prod"
    assert check.line.startswith(
        "FAIL  environment setting  (this host builds DAGs for 'preprod', not 'prod': set $DAG_FACTORY_ENV"
    )


def test_the_plugin_is_found_by_its_extra_links() -> None:
    assert doctor.check_plugin().line == (
        "ok    plugin dag_factory registered  (links: Executed notebook, Notebook source, Run report)"
    )


def test_a_plugin_copy_beside_the_installed_one_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow import plugins_manager

    # what Airflow records when a second copy (one metadata record: the plugins folder) declares the plugin
    twice = {"dag_factory": "Plugin 'dag_factory' already registered, skipping"}
    monkeypatch.setattr(plugins_manager, "get_import_errors", lambda: twice)
    monkeypatch.setattr(doctor, "plugin_metadata", lambda: ["/opt/venv/site-packages"])
    assert doctor.check_plugin().line == (
        "FAIL  plugin dag_factory registered  (a second copy of the plugin (e.g. in the plugins folder) "
        "declares it too: keep the installed one (pip show -f dag-factory-notebooks))"
    )


def test_plugin_metadata_seen_twice_passes_and_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow import plugins_manager

    twice = {"dag_factory": "Plugin 'dag_factory' already registered, skipping"}
    monkeypatch.setattr(plugins_manager, "get_import_errors", lambda: twice)
    monkeypatch.setattr(doctor, "plugin_metadata", lambda: ["/opt/venv/site-packages", "/srv/checkout"])
    assert doctor.check_plugin().line == (
        "ok    plugin dag_factory registered  (links: Executed notebook, Notebook source, Run report; its "
        "metadata is found in /opt/venv/site-packages and /srv/checkout, so Airflow lists the second as an "
        "import error: remove the stale one (an egg-info left in a checkout on sys.path))"
    )


def test_a_local_environment_needs_no_metadata_db_or_environment_setting_on_this_host(tmp_path: Path) -> None:
    for name in ("platform.yaml", "churn-demo.yaml"):
        shutil.copy(REPO / "project_configs" / name, tmp_path / name)
    # an unmigrated metadata DB and no environment setting would fail both checks for a deployed environment
    lines = [check.line for check in doctor.run(tmp_path / "platform.yaml", "local")]
    assert lines[:3] == [
        "ok    metadata DB and environment setting  (dag-factory run brings its own)",
        f"ok    specs in {tmp_path}  (1 valid)",
        "ok    extra [local] (the local backend)",
    ]


def test_a_job_backend_environment_says_its_checks_are_not_built_rather_than_passing(tmp_path: Path) -> None:
    platform = load_platform(write_job_platform(tmp_path))
    lines = [check.line for check in doctor.environment_checks(platform, "preprod")]
    assert lines[-1] == (
        "FAIL  sagemaker-job backend of preprod  (its AWS, job role and image checks are not built yet: "
        "docs/deploy.md section 12)"
    )
    assert not any(line.startswith("ok    extra [local]") for line in lines)
