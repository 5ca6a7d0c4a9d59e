"""Failures on the SageMaker backend: whatever breaks, the run fails and no instance or remote process is
left behind; infrastructure faults are retried, a notebook's own error or timeout is not."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from dag_factory.compute.code_versions import S3CodeStore, current_version
from dag_factory.local.execute import RunResult
from dag_factory.local.failures import group_failure
from dag_factory.local.run_records import log_events
from dag_factory.plan.notebook_failure import MARKER
from tests.e2e.harness import (
    DEMO_PARAMETERS,
    E2E,
    ENV_NAME,
    Job,
    Watch,
    attempt_error,
    copy_project,
    notebook_errors,
    parent_pid,
    state_mismatches,
    states,
    tries_told,
    wait_for_no_step_processes,
)
from tests.notebooks import notebook_json
from tests.servers.airflow import Deployment
from tests.servers.airflow_api import AirflowApi
from tests.servers.sagemaker import NOTEBOOK_INSTANCE_TYPE, ROLE_ARN, Throttling, wait_for_status
from tests.servers.sagemaker_rules import Latencies
from tests.servers.smtp import Mailbox, running_mailbox

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


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with running_mailbox() as box:
        yield box


NOTIFY = {"on_failure": ["team@example.com"], "on_retry": ["oncall@example.com"]}


def test_failing_notebook_fails_its_value_only_archives_it_and_cleans_up(e2e: E2E) -> None:
    platform = e2e.platform_settings(instance_prices={NOTEBOOK_INSTANCE_TYPE: 36.0})  # 1 cent a second
    job = e2e.job(["de", "fr"], notebook_params={"fail_for": "fr"}, platform=platform)
    result = e2e.run(job)

    assert result.state == "failed", result.log_path
    fr, de = states(result, "fr"), states(result, "de")
    assert fr["nb_01_features"] == "success" and fr["nb_02_train"] == "failed"
    assert fr["deliver_churn_scores"] == fr["deliver_churn_metrics"] == "upstream_failed"
    assert set(de.values()) == {"success"}, de
    # the executed notebook, error included, is archived for debugging
    executed = e2e.executed_notebook(job, result.run_id, "fr", "02_train.ipynb")
    assert notebook_errors(executed) == ["RuntimeError: forced failure for fr"]
    # the task log over SSH says why in the notebook's own terms (the helper run after papermill failed)
    explained = (
        "in notebooks/02_train.ipynb cell 3 (papermill's \"Executing Cell 4\"), line 3 "
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
    links: dict[str, str | None] = AirflowApi(e2e.server.url).call("GET", path)["extra_links"]
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
    # the source as the run synced it: the version deployed before it started (the only one here)
    version = current_version(S3CodeStore(e2e.sm.moto.client("s3"), job.code_bucket, job.dag_id))
    report_link = {"Run report": console + quote(f"{folder}/report.html")}  # on every task of the run
    for task_id in ("fr.nb_02_train", "de.nb_01_features"):
        value, notebook = task_id.split(".")[0], task_id.split(".nb_")[1]
        assert extra_links(e2e, job, result.run_id, task_id) == {
            "Executed notebook": console + quote(f"{folder}/{value}/{notebook}.html"),
            "Notebook source": source + quote(f"{job.dag_id}/versions/{version}/notebooks/{notebook}.ipynb"),
            **report_link,
        }
    assert extra_links(e2e, job, result.run_id, "report") == report_link
    page = _s3_text(e2e, job, f"{folder}/report.html")
    assert (
        "RuntimeError: forced failure for fr" in page
        and f"s3://{job.output_bucket}/{folder}/de/02_train.html" in page
    )


def sleeping_notebook(seconds: int) -> str:
    return notebook_json(
        "import time\ntime.sleep(int(seconds))", parameters=f"country = 'de'\nseconds = {seconds}"
    )


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


# a notebook's timeout is enforced on the instance by the guard: test_remote_process_killed_on_timeout
INFRA = "infrastructure error"
FAULTS = [
    Fault("create_fails", "create_instance", "subnet-0000dead", False, INFRA, _bad_subnet),
    Fault("resolve_ip_fails", "resolve_ip", "has no network interface", True, INFRA, _no_eni),
    Fault("ssh_unreachable", "prepare", "Unable to connect to port", True, INFRA, _unreachable),
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
        assert name.startswith(f"nb-{ENV_NAME}-churn-demo-de-")
    assert e2e.rows("analytics.churn_scores") == {}


def test_throttled_sagemaker_calls_are_retried(e2e: E2E, sagemaker_throttling: Throttling) -> None:
    job = e2e.job(["nl"])
    sagemaker_throttling.inject("CreateNotebookInstance", 2)
    sagemaker_throttling.inject("DescribeNotebookInstance", 3)
    result = e2e.run(job)

    assert result.state == "success", result.error
    assert sagemaker_throttling.served("CreateNotebookInstance") == 2
    assert sagemaker_throttling.served("DescribeNotebookInstance") == 3
    # retried by botocore, not by Airflow: no try of any task failed on a throttling error (a sensor may
    # still be retried by Airflow itself after a late executor event, apache/airflow#71172)
    throttled = {
        (ti.task_id, n): error
        for ti in result.task_instances
        for n in range(1, ti.try_number)
        if "Throttling" in (error := attempt_error(result, ti.task_id, n))
    }
    assert not throttled, throttled
    assert e2e.instances() == []
    assert e2e.rows("analytics.churn_scores") == {"nl": 500}
    json.dumps(result.xcom("nl.resolve_ip"))


# --- remote work dies with its task ------------------------------------------------------------------


def _one_notebook_job(e2e: E2E, name: str, text: str, timeout: str, **spec_fields: Any) -> Job:
    project = copy_project(e2e.tmp_path / "project")
    (project / "notebooks" / f"{name}.ipynb").write_text(text)
    notebooks = [{"path": f"notebooks/{name}.ipynb", "timeout": timeout}]
    return e2e.job(["de"], project_dir=project, notebooks=notebooks, deliver=[], **spec_fields)


def test_remote_process_killed_on_timeout(e2e: E2E) -> None:
    job = _one_notebook_job(e2e, "00_sleep", sleeping_notebook(600), "8s")
    seen: dict[int, str] = {}

    def papermill_running() -> bool:
        seen.update({pid: m for pid, m in job.step_processes().items() if "#nb_00_sleep#" in m})
        return False

    with Watch(papermill_running):
        result = e2e.run(job)

    assert result.state == "failed", result.log_path
    nb = result.ti("de.nb_00_sleep")
    assert nb.state == "failed" and nb.try_number == 1, nb  # a timeout is the notebook's: not retried
    assert "timed out after 8s (the step's timeout)" in nb.error, nb.error
    assert "the notebook ran out of time: not retried" in nb.error
    assert len(seen) >= 3, seen  # timeout, bash, papermill, its kernel ran on the instance
    assert wait_for_no_step_processes(job) == {}  # and nothing of it is left
    assert_nothing_left(e2e, result, ["de"])


def test_remote_process_killed_when_task_marked_failed(e2e: E2E, airflow_deployment: Deployment) -> None:
    """Someone marks the running notebook task failed (the UI's "mark as failed", through the REST API):
    Airflow kills the task process, its SSH session ends, and the instance side kills the notebook's tree
    at once, long before the notebook's own timeout (15 min); the teardown deletes the instance."""
    job = _one_notebook_job(e2e, "00_sleep", sleeping_notebook(600), "15m", project="churn-marked",
                            schedule=None)  # fmt: skip
    seen: dict[int, str] = {}
    marked: list[str] = []
    gone_while_running: list[bool] = []

    def notebook_steps() -> dict[int, str]:
        return {pid: m for pid, m in job.step_processes().items() if "#nb_00_sleep#" in m}

    def mark_failed_then_watch() -> bool:
        if not marked:
            seen.update(notebook_steps())
            if len(seen) >= 4:  # timeout, bash, papermill and the kernel run on the instance
                run_id = airflow_deployment.last_run_id
                airflow_deployment.mark_task_failed(job.dag_id, run_id, "de.nb_00_sleep")
                marked.append(run_id)
            return False
        if notebook_steps():
            return False
        run_state = airflow_deployment.api("GET", f"/api/v2/dags/{job.dag_id}/dagRuns/{marked[0]}")["state"]
        gone_while_running.append(run_state == "running")  # before the run (and its teardown) ended
        return True

    with Watch(mark_failed_then_watch):
        result = e2e.run_deployed(airflow_deployment, job)

    assert marked, "the notebook never ran"
    assert gone_while_running == [True], "the notebook outlived its task"
    assert result.state == "failed", result.error
    nb = result.ti("de.nb_00_sleep")
    assert nb.state == "failed" and nb.try_number == 1, nb  # marked failed: not retried
    assert wait_for_no_step_processes(job) == {}
    assert_nothing_left(e2e, result, ["de"])


def test_chatty_notebook_bounded_by_timeout(e2e: E2E) -> None:
    """Output every 0.2 s never trips an idle timeout: the notebook's own timeout stops it on the instance
    (Airflow's execution_timeout, the timeout + 90 s, would come far later)."""
    chatty = notebook_json(
        "import time\nwhile True:\n    print('still working', flush=True)\n    time.sleep(0.2)",
        parameters=DEMO_PARAMETERS,
    )
    job = _one_notebook_job(e2e, "00_chatty", chatty, "10s")
    result = e2e.run(job)

    assert result.state == "failed", result.log_path
    nb = result.ti("de.nb_00_chatty")
    assert nb.state == "failed" and nb.try_number == 1
    assert "exit status 124: timed out after 10s (the step's timeout)" in nb.error, nb.error
    assert "AirflowTaskTimeout" not in nb.error
    assert wait_for_no_step_processes(job) == {}
    assert_nothing_left(e2e, result, ["de"])


# --- retries that know what failed -------------------------------------------------------------------


def test_notebook_error_not_retried(e2e: E2E, mailbox: Mailbox) -> None:
    job = e2e.job(["fr"], notebook_params={"fail_for": "fr"}, notify=NOTIFY)  # spec retries: 1
    result = e2e.run(job, AIRFLOW_CONN_SMTP_DEFAULT=mailbox.connection_uri)

    assert result.state == "failed", result.log_path
    nb = result.ti("fr.nb_02_train")
    assert nb.state == "failed" and nb.try_number == 1, tries_told(result)
    located = (  # the task's error is the notebook's located error, then where the executed notebook is
        "(exit status 85: notebook error in notebooks/02_train.ipynb cell 3 "
        "(papermill's \"Executing Cell 4\"), line 3 "
        '`raise RuntimeError(f"forced failure for {country}")`: RuntimeError: forced failure for fr)'
    )
    assert located in nb.error, nb.error
    assert "; executed notebook: s3://" in nb.error and nb.error.endswith("/fr/02_train.html"), nb.error
    assert "the notebook's own error: not retried (set notebooks[].retries to retry it)" in nb.error
    assert result.ti("fr.nb_01_features").try_number == 1
    assert_nothing_left(e2e, result, ["fr"])
    assert e2e.rows("analytics.churn_scores") == {}
    # notify.on_failure: one mail for the failed notebook task (the callback runs as the task fails)
    failed = mailbox.wait_for(lambda m: "Task fr.nb_02_train of " in mailbox.body(m))
    assert failed["Subject"] == f"[dag-factory] {job.dag_id} failed in {ENV_NAME}"
    assert failed["X-Envelope-To"] == "team@example.com"
    assert [s for s in mailbox.subjects() if "retried" in s] == []  # nothing was retried


def test_ssh_drop_is_retried(e2e: E2E, mailbox: Mailbox) -> None:
    """The SSH session of a running notebook is cut (its sshd process killed): an infrastructure fault.
    The instance side kills the orphaned notebook, and the retry runs it again."""
    project = copy_project(e2e.tmp_path / "project")
    slow = notebook_json(
        "import os, time\nflag = 'first-try-done'\nif not os.path.exists(flag):\n"
        "    open(flag, 'w').close()\n    time.sleep(600)",
        parameters=DEMO_PARAMETERS,
    )
    (project / "notebooks" / "00_slow_once.ipynb").write_text(slow)
    notebooks = [{"path": "notebooks/00_slow_once.ipynb", "timeout": "15m"}, *yaml_notebooks()]
    job = e2e.job(["de"], project_dir=project, notebooks=notebooks, notify=NOTIFY)
    dropped: list[int] = []

    flag = Path(job.workdir.replace("{group}", "de"), "project", "first-try-done")

    def cut_the_session() -> bool:
        steps = {pid: m for pid, m in job.step_processes().items() if "#nb_00_slow_once#" in m}
        if not steps or not flag.exists():  # not before the notebook is in its first try's sleep
            return False
        guard = parent_pid(min(steps))  # the guard runs the step; its parent is the SSH session
        session = parent_pid(guard)
        os.kill(session, signal.SIGKILL)
        dropped.append(session)
        return True

    with Watch(cut_the_session):
        result = e2e.run(job, AIRFLOW_CONN_SMTP_DEFAULT=mailbox.connection_uri)

    assert dropped, "the notebook never ran"
    assert result.state == "success", result.error
    nb = result.ti("de.nb_00_slow_once")
    assert nb.try_number == 2, nb
    assert "an infrastructure fault: retried (try 1 of 2, retries: 1)" in attempt_error(
        result, "de.nb_00_slow_once", 1
    )
    assert wait_for_no_step_processes(job) == {}
    assert_nothing_left(e2e, result, ["de"])
    assert e2e.rows("analytics.churn_scores") == {"de": 800}
    # notify.on_retry: the failed first try was mailed (the run succeeded: no failure mail)
    assert mailbox.subjects() == [f"[dag-factory] {job.dag_id} is being retried in {ENV_NAME}"]
    retried = mailbox.messages[0]
    assert retried["X-Envelope-To"] == "oncall@example.com"
    body = mailbox.body(retried)
    assert "Task de.nb_00_slow_once of " in body and ", try 1: " in body, body


def yaml_notebooks() -> list[dict[str, Any]]:
    """The demo spec's notebooks (features, train), as the e2e job writes them."""
    return [
        {"path": "notebooks/01_features.ipynb", "timeout": "10m"},
        {"path": "notebooks/02_train.ipynb", "parameters": {"max_depth": 4}, "timeout": "10m"},
    ]


def test_capacity_error_is_retried(e2e: E2E) -> None:
    """The account's quota for the instance type is used up (ResourceLimitExceeded): the create fails,
    backs off, and its retry succeeds once capacity is free again."""
    sm = e2e.sm.moto.client("sagemaker")
    e2e.sm.aws.quotas = {NOTEBOOK_INSTANCE_TYPE: 1}
    sm.create_notebook_instance(NotebookInstanceName="someone-elses", InstanceType=NOTEBOOK_INSTANCE_TYPE,
                                RoleArn=ROLE_ARN)  # fmt: skip
    wait_for_status(sm, "someone-elses", "InService")
    # its stop is at once: capacity is free the moment the refusal is seen, long before the retry (5 s),
    # however late the run's progress is read on a loaded machine
    e2e.sm.aws.slow["someone-elses"] = Latencies(stopping_s=0.0)
    freed: list[str] = []

    def free_capacity() -> bool:
        if any(action == "CreateNotebookInstance" for action, _, _ in e2e.sm.aws.rejected):
            sm.stop_notebook_instance(NotebookInstanceName="someone-elses")  # a stopped one does not count
            freed.append("someone-elses")
            return True
        return False

    job = e2e.job(["it"])
    with Watch(free_capacity, interval=0.2):
        result = e2e.run(job)

    assert freed and result.state == "success", tries_told(result)
    create = result.ti("it.create_instance")
    # one retry of ours (after the refusal); any other is Airflow's own (state_mismatches), not ours
    airflows = state_mismatches(result)
    ours = [n for n in range(1, create.try_number) if ("it.create_instance", n) not in airflows]
    assert ours == [1], tries_told(result)
    assert "ResourceLimitExceeded" in attempt_error(result, "it.create_instance", 1)
    refused = [(action, name) for action, name, message in e2e.sm.aws.rejected if "service limit" in message]
    assert refused == [("CreateNotebookInstance", result.xcom("it.create_instance"))]
    assert [i["NotebookInstanceName"] for i in e2e.instances()] == ["someone-elses"]
    assert e2e.rows("analytics.churn_scores") == {"it": 500}
