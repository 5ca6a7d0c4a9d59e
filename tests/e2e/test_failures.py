"""Failures on the SageMaker backend: whatever breaks, the run fails and no instance is left behind."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nbformat
import pytest

from dag_factory.local.execute import RunResult
from tests.e2e.conftest import E2E, Job, copy_project, notebook_errors, states
from tests.servers.sagemaker import Throttling

pytestmark = pytest.mark.integration


def assert_nothing_left(e2e: E2E, result: RunResult, values: list[str]) -> None:
    assert e2e.instances() == [], "a notebook instance was left behind"
    assert e2e.sm.eni.assigned == {}, "an ENI was left behind"
    for value in values:
        got = states(result, value)
        assert got["stop_instance"] == "success" and got["delete_instance"] == "success", got


def test_failing_notebook_fails_its_value_only_archives_it_and_cleans_up(e2e: E2E) -> None:
    job = e2e.job(["de", "fr"], notebook_params={"fail_for": "fr"})
    result = e2e.run(job)

    assert result.state == "failed", result.log_path
    fr, de = states(result, "fr"), states(result, "de")
    assert fr["nb_01_features"] == "success" and fr["nb_02_train"] == "failed"
    assert fr["deliver_0_postgres"] == fr["deliver_1_postgres"] == "upstream_failed"
    assert set(de.values()) == {"success"}, de
    # the executed notebook, error included, is archived for debugging
    executed = e2e.executed_notebook(job, result.run_id, "fr", "02_train.ipynb")
    assert notebook_errors(executed) == ["RuntimeError: forced failure for fr"]
    assert_nothing_left(e2e, result, ["de", "fr"])
    assert e2e.rows("analytics.churn_scores") == {"de": 800}
    assert e2e.rows("analytics.churn_metrics") == {"de": 1}


def sleeping_notebook(seconds: int) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(f"country = 'de'\nseconds = {seconds}")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("import time\ntime.sleep(int(seconds))")]
    return str(nbformat.writes(nb))


@dataclass(frozen=True)
class Fault:
    name: str
    failed_task: str
    error: str  # in the failed task's error
    created: bool  # whether SageMaker made an instance before the failure
    arrange: Callable[[E2E, pytest.MonkeyPatch], tuple[Job, dict[str, str]]]


def _bad_subnet(e2e: E2E, _: pytest.MonkeyPatch) -> tuple[Job, dict[str, str]]:
    platform = e2e.platform_settings(subnet_id="subnet-0000dead")
    return e2e.job(["de"], platform=platform), {}


def _no_eni(e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> tuple[Job, dict[str, str]]:
    from moto.sagemaker.models import FakeSagemakerNotebookInstance

    patched = FakeSagemakerNotebookInstance.to_dict

    def without_eni(notebook: Any) -> dict[str, Any]:
        answer: dict[str, Any] = patched(notebook)
        answer.pop("NetworkInterfaceId", None)
        return answer

    monkeypatch.setattr(FakeSagemakerNotebookInstance, "to_dict", without_eni)
    return e2e.job(["de"]), {}


def _unreachable(e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> tuple[Job, dict[str, str]]:
    # the instance's private IP is a loopback address where nothing listens (a security group
    # that drops port 22 looks the same from Airflow: no SSH session)
    monkeypatch.setattr(e2e.sm.eni, "addresses", ("127.0.2.250",))
    return e2e.job(["de"]), {}


def _hangs(e2e: E2E, _: pytest.MonkeyPatch) -> tuple[Job, dict[str, str]]:
    project = copy_project(e2e.tmp_path / "project")
    (project / "notebooks" / "00_sleep.ipynb").write_text(sleeping_notebook(30))
    notebooks = [{"path": "notebooks/00_sleep.ipynb", "timeout": "5s"}]
    return e2e.job(["de"], project_dir=project, notebooks=notebooks), {}


FAULTS = [
    Fault("create_fails", "create_instance", "subnet-0000dead", False, _bad_subnet),
    Fault("resolve_ip_fails", "resolve_ip", "has no network interface", True, _no_eni),
    Fault("ssh_unreachable", "prepare", "Unable to connect to port", True, _unreachable),
    Fault("ssh_command_times_out", "nb_00_sleep", "SSH command timed out", True, _hangs),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_fails_the_run_and_leaves_no_instance(
    e2e: E2E, monkeypatch: pytest.MonkeyPatch, fault: Fault
) -> None:
    job, extra_env = fault.arrange(e2e, monkeypatch)
    result = e2e.run(job, **extra_env)

    assert result.state == "failed", result.log_path
    got = states(result, "de")
    assert got.get(fault.failed_task) == "failed", (got, result.error, result.log_path)
    failed = result.ti(f"de.{fault.failed_task}")
    assert fault.error in failed.error, failed.error
    assert_nothing_left(e2e, result, ["de"])
    if fault.created:
        name = result.xcom("de.create_instance")
        assert name.startswith("nb-churn-demo-de-")
    assert e2e.rows("analytics.churn_scores") == {}


def test_throttled_sagemaker_calls_are_retried(e2e: E2E, sagemaker_throttling: Throttling) -> None:
    job = e2e.job(["nl"])
    sagemaker_throttling.inject("CreateNotebookInstance", 2)
    sagemaker_throttling.inject("DescribeNotebookInstance", 3)
    result = e2e.run(job)

    assert result.state == "success", result.error
    assert sagemaker_throttling.served("CreateNotebookInstance") == 2
    assert sagemaker_throttling.served("DescribeNotebookInstance") == 3
    assert all(ti.try_number == 1 for ti in result.task_instances), "retried by botocore, not by Airflow"
    assert e2e.instances() == []
    assert e2e.rows("analytics.churn_scores") == {"nl": 500}
    json.dumps(result.xcom("nl.resolve_ip"))
