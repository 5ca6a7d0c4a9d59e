"""Failures on the SageMaker backend: whatever breaks, the run fails and no instance is left behind."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nbformat
import pytest

from dag_factory.local.execute import RunResult, log_events
from dag_factory.local.failures import group_failure
from dag_factory.plan.notebook_failure import MARKER
from tests.e2e.conftest import E2E, ENV_NAME, Job, copy_project, notebook_errors, states
from tests.servers.sagemaker import NOTEBOOK_INSTANCE_TYPE, Throttling

pytestmark = pytest.mark.integration


def assert_nothing_left(e2e: E2E, result: RunResult, values: list[str]) -> None:
    assert e2e.instances() == [], "a notebook instance was left behind"
    assert e2e.sm.eni.assigned == {}, "an ENI was left behind"
    for value in values:
        got = states(result, value)
        assert got["stop_instance"] == "success" and got["delete_instance"] == "success", got


def failure_reason(job: Job, result: RunResult, value: str) -> str:
    """What `dag-factory run`'s summary would say for this value (the same code reads the task logs)."""
    from dag_factory.load.specs import load_platform, load_spec
    from dag_factory.plan.planner import plan_dag

    plan = plan_dag(load_spec(job.spec, load_platform(job.platform)), ENV_NAME, only=job.values)
    group = next(g for g in plan.groups if g.group_id == value)
    tis = [ti for ti in result.task_instances if ti.task_id.startswith(f"{value}.")]
    return group_failure(group, tis, result.run_id)


def test_failing_notebook_fails_its_value_only_archives_it_and_cleans_up(e2e: E2E) -> None:
    platform = e2e.platform_settings(instance_prices={NOTEBOOK_INSTANCE_TYPE: 36.0})  # 1 cent a second
    job = e2e.job(["de", "fr"], notebook_params={"fail_for": "fr"}, platform=platform)
    result = e2e.run(job)

    assert result.state == "failed", result.log_path
    fr, de = states(result, "fr"), states(result, "de")
    assert fr["nb_01_features"] == "success" and fr["nb_02_train"] == "failed"
    assert fr["deliver_0_postgres"] == fr["deliver_1_postgres"] == "upstream_failed"
    assert set(de.values()) == {"success"}, de
    # the executed notebook, error included, is archived for debugging
    executed = e2e.executed_notebook(job, result.run_id, "fr", "02_train.ipynb")
    assert notebook_errors(executed) == ["RuntimeError: forced failure for fr"]
    # the task log over SSH says why in the notebook's own terms (the helper run after papermill failed)
    explained = (
        "in notebooks/02_train.ipynb cell 3, line 3 "
        '`raise RuntimeError(f"forced failure for {country}")`: RuntimeError: forced failure for fr'
    )
    logged = [str(e.get("event")) for e in log_events(result.ti("fr.nb_02_train").log_path or Path())]
    assert f"{MARKER} {explained}" in logged
    assert failure_reason(job, result, "fr") == f"nb_02_train: notebook error {explained}"
    assert_nothing_left(e2e, result, ["de", "fr"])
    assert e2e.rows("analytics.churn_scores") == {"de": 800}
    assert e2e.rows("analytics.churn_metrics") == {"de": 1}
    assert_rendered_and_reported(e2e, job, result)


def _s3_text(e2e: E2E, job: Job, key: str) -> str:
    body = e2e.sm.moto.client("s3").get_object(Bucket=job.output_bucket, Key=key)["Body"].read()
    return str(body.decode())


def extra_links(e2e: E2E, job: Job, run_id: str, task_id: str) -> dict[str, str | None]:
    path = f"/api/v2/dags/{job.dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/links"
    with urllib.request.urlopen(e2e.server.url + path, timeout=60) as answer:
        links: dict[str, str | None] = json.loads(answer.read())["extra_links"]
    return links


def assert_rendered_and_reported(e2e: E2E, job: Job, result: RunResult) -> None:
    """The HTML renderings beside the executed notebooks in S3 (the failed one too), and the run report."""
    folder = f"{job.dag_id}/{result.run_id}"
    for value, notebook in [
        ("de", "01_features"),
        ("de", "02_train"),
        ("fr", "01_features"),
        ("fr", "02_train"),
    ]:
        page = _s3_text(e2e, job, f"{folder}/{value}/{notebook}.html")
        assert page.startswith("<!DOCTYPE html>") and "injected-parameters" in page
    assert "forced failure for fr" in _s3_text(e2e, job, f"{folder}/fr/02_train.html")
    assert result.ti("report").state == "success"
    report = json.loads(_s3_text(e2e, job, f"{folder}/report.json"))
    values = {v["value"]: v for v in report["values"]}
    assert {v: e["status"] for v, e in values.items()} == {"de": "success", "fr": "failed"}
    assert values["fr"]["failure"].startswith("fr.nb_02_train: cell ")
    assert values["fr"]["failure"].endswith("RuntimeError: forced failure for fr")
    assert values["de"]["rows_delivered"] == {
        "postgres:analytics.churn_scores": 800,
        "postgres:analytics.churn_metrics": 1,
    }
    for entry in values.values():  # from SageMaker's CreationTime to the confirmed deletion
        assert 0 < entry["instance_hours"] < 1
        assert entry["cost_usd"] == pytest.approx(entry["instance_hours"] * 36.0, abs=0.001)
        html = [n["html"] for n in entry["notebooks"]]
        assert html == [
            f"s3://{job.output_bucket}/{folder}/{entry['value']}/{n}.html"
            for n in ("01_features", "02_train")
        ]
    assert report["total"]["cost_usd"] == pytest.approx(
        values["de"]["cost_usd"] + values["fr"]["cost_usd"], abs=0.001
    )
    assert report["estimate"]["usd_per_hour"] == 36.0
    # the extra links, read back through Airflow's REST API (stored in XCom by the worker)
    console = f"https://s3.console.aws.amazon.com/s3/object/{job.output_bucket}?region=eu-west-1&prefix="
    source = f"https://s3.console.aws.amazon.com/s3/object/{job.code_bucket}?region=eu-west-1&prefix="
    for task_id in ("fr.nb_02_train", "de.nb_01_features"):
        value, notebook = task_id.split(".")[0], task_id.split(".nb_")[1]
        assert extra_links(e2e, job, result.run_id, task_id) == {
            "Executed notebook": console + quote(f"{folder}/{value}/{notebook}.html"),
            "Notebook source": source + quote(f"{job.dag_id}/notebooks/{notebook}.ipynb"),
        }
    assert extra_links(e2e, job, result.run_id, "report") == {
        "Run report": console + quote(f"{folder}/report.html")
    }
    page = _s3_text(e2e, job, f"{folder}/report.html")
    assert (
        "RuntimeError: forced failure for fr" in page
        and f"s3://{job.output_bucket}/{folder}/de/02_train.html" in page
    )


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
    reason: str  # what the run summary says after the task id
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


INFRA, TIMED_OUT = "infrastructure error", "timed out after 5s"
FAULTS = [
    Fault("create_fails", "create_instance", "subnet-0000dead", False, INFRA, _bad_subnet),
    Fault("resolve_ip_fails", "resolve_ip", "has no network interface", True, INFRA, _no_eni),
    Fault("ssh_unreachable", "prepare", "Unable to connect to port", True, INFRA, _unreachable),
    Fault("ssh_command_times_out", "nb_00_sleep", "SSH command timed out", True, TIMED_OUT, _hangs),
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
    reason = failure_reason(job, result, "de")
    assert reason.startswith(f"{fault.failed_task}: {fault.reason}"), reason
    assert fault.error in reason or fault.reason.startswith("timed out"), reason
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
