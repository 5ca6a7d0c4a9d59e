"""The example job on the `sagemaker-job` backend: each value a SageMaker Training Job (the strict fake of
tests/servers/sagemaker_jobs.py runs its container on this machine), waits deferred to a real triggerer of
the real scheduler (tests/servers/airflow.py's deployment), rows into a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
import yaml

from dag_factory.airflow.jobs import JOB_NAME_XCOM
from dag_factory.plan.report import BILLABLE_XCOM
from tests.e2e.harness import (
    DATE,
    DEMO_SPEC,
    E2E,
    JOB_INSTANCE_TYPE,
    Job,
    copy_project,
    injected_source,
    tries_told,
)
from tests.notebooks import notebook_json
from tests.servers.airflow import POOL, Deployment
from tests.servers.sagemaker_jobs import CAPACITY_ERROR, StrictTrainingJobs

pytestmark = pytest.mark.integration

VALUES = ["de", "fr", "nl"]
LIFE = [("InProgress", "Starting"), ("InProgress", "Downloading"), ("InProgress", "Training"),
        ("InProgress", "Uploading")]  # fmt: skip


def test_job_backend_happy_path(
    e2e: E2E, training_jobs: StrictTrainingJobs, airflow_deployment: Deployment
) -> None:
    job = e2e.job_backend_job(VALUES, project="churn-jobs")
    result = e2e.run_deployed(airflow_deployment, job)
    assert result.state == "success", tries_told(result)

    names = {value: result.xcom(f"{value}.run_job", JOB_NAME_XCOM) for value in VALUES}
    assert len(set(names.values())) == 3
    for value, name in names.items():
        assert training_jobs.statuses(name) == [*LIFE, ("Completed", "Completed")], name
        described = training_jobs.jobs[name].describe()
        # the job's billable seconds are what the task recorded for the report
        assert result.xcom(f"{value}.run_job", BILLABLE_XCOM) == described["BillableTimeInSeconds"]
    # the three ran in parallel: every job was created before any of them completed
    created = [at for name, status, secondary, at in training_jobs.history if secondary == "Starting"]
    completed = [at for name, status, secondary, at in training_jobs.history if status == "Completed"]
    assert len(created) == 3 and max(created) < min(completed)
    assert training_jobs.running() == []

    for value in VALUES:  # archived per value with the injected parameters, as on the other backends
        source = injected_source(e2e.executed_notebook(job, result.run_id, value, "02_train.ipynb"))
        assert f'country = "{value}"' in source and f'logical_date = "{DATE.isoformat()}"' in source
    assert e2e.rows("analytics.churn_scores") == {"de": 800, "fr": 500, "nl": 500}  # once each

    key = f"{job.dag_id}/{result.run_id}/report.json"
    body = e2e.sm.moto.client("s3").get_object(Bucket=job.output_bucket, Key=key)["Body"].read()
    report = json.loads(body)
    billed = {v: training_jobs.jobs[names[v]].describe()["BillableTimeInSeconds"] for v in VALUES}
    assert {entry["value"]: entry["instance_hours"] for entry in report["values"]} == {
        value: round(seconds / 3600, 4) for value, seconds in billed.items()
    }
    assert report["backend"] == "sagemaker-job" and report["status"] == "success"


def test_job_notebook_error_not_retried(
    e2e: E2E, training_jobs: StrictTrainingJobs, airflow_deployment: Deployment
) -> None:
    job = e2e.job_backend_job(["fr"], project="churn-jobs-error", notebook_params={"fail_for": "fr"})
    result = e2e.run_deployed(airflow_deployment, job)  # the spec retries infrastructure faults once

    assert result.state == "failed"
    run_job = result.ti("fr.run_job")
    assert (run_job.state, run_job.try_number) == ("failed", 1), tries_told(result)
    [name] = training_jobs.jobs
    described = training_jobs.jobs[name].describe()
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("AlgorithmError: ")
    assert described["FailureReason"].endswith(", exit code: 85")  # the guard's: the notebook raised
    assert "the notebook's own error: not retried (set notebooks[].retries to retry it)" in run_job.error
    assert result.ti("fr.deliver_churn_scores").state == "upstream_failed"
    # the executed notebook is archived with its error, as on the other backends
    executed = e2e.executed_notebook(job, result.run_id, "fr", "02_train.ipynb")
    assert "forced failure for fr" in json.dumps(executed)


def _one_notebook_job(e2e: E2E, values: list[str], seconds: int, project: str, **spec_fields: Any) -> Job:
    """One notebook that sleeps ``seconds`` (0: returns at once), no delivery: the job's own life only."""
    folder = copy_project(e2e.tmp_path / "project")
    code = "import time\ntime.sleep(int(seconds))"
    text = notebook_json(code, parameters=f"country = 'de'\nseconds = {seconds}")
    (folder / "notebooks" / "00_sleep.ipynb").write_text(text)
    notebooks = [{"path": "notebooks/00_sleep.ipynb"}]
    return e2e.job_backend_job(values, project=project, project_dir=folder, notebooks=notebooks, deliver=[],
                               **spec_fields)  # fmt: skip


def _start(e2e: E2E, deployment: Deployment, job: Job) -> str:
    e2e.deploy_on(deployment, job)
    return deployment.trigger(job.dag_id, dt.datetime.combine(DATE, dt.time(), tzinfo=dt.UTC))


def test_job_capacity_error_is_retried(
    e2e: E2E, training_jobs: StrictTrainingJobs, airflow_deployment: Deployment
) -> None:
    """SageMaker has no capacity of the type for the first job (CapacityError): the task retries (the
    spec's retries: 1, after 5 s) with a new job, which completes."""
    training_jobs.fail_capacity(1)
    job = _one_notebook_job(e2e, ["de"], 0, "churn-jobs-capacity")
    result = e2e.run_deployed(airflow_deployment, job)

    assert result.state == "success", tries_told(result)
    assert result.ti("de.run_job").try_number == 2, tries_told(result)
    first, second = training_jobs.jobs.values()
    assert first.describe()["FailureReason"] == CAPACITY_ERROR
    assert training_jobs.statuses(first.name) == [("InProgress", "Starting"), ("Failed", "Failed")]
    assert second.status == "Completed" and second.name != first.name  # a new name: AWS keeps the old one


def test_job_timeout_stops_the_job(
    e2e: E2E, training_jobs: StrictTrainingJobs, airflow_deployment: Deployment
) -> None:
    """compute.timeout is the job's MaxRuntimeInSeconds: SageMaker stops the job (its container gets
    SIGTERM, the guard stops the notebook's processes); a timeout is the notebook's: not retried."""
    compute = {**yaml.safe_load(DEMO_SPEC.read_text())["compute"], "instance_type": JOB_INSTANCE_TYPE,
               "timeout": "20s"}  # fmt: skip
    job = _one_notebook_job(e2e, ["de"], 600, "churn-jobs-timeout", compute=compute)
    result = e2e.run_deployed(airflow_deployment, job)

    assert result.state == "failed"
    run_job = result.ti("de.run_job")
    assert (run_job.state, run_job.try_number) == ("failed", 1), tries_told(result)
    assert "SageMaker stopped it at its MaxRuntimeInSeconds (compute.timeout)" in run_job.error
    assert "the notebook ran out of time: not retried" in run_job.error
    [fake] = training_jobs.jobs.values()
    assert training_jobs.statuses(fake.name)[-2:] == [
        ("Stopping", "Stopping"),
        ("Stopped", "MaxRuntimeExceeded"),
    ]
    assert fake.process is not None and fake.process.poll() is not None
    assert job.step_processes() == {}  # nothing of the notebook is left running


def test_job_task_killed_stops_the_job(
    e2e: E2E, training_jobs: StrictTrainingJobs, airflow_deployment: Deployment
) -> None:
    """Someone marks the waiting (deferred) job task failed: the triggerer's on_kill stops the job at once,
    long before its notebook (10 min) or its timeout would end it."""
    job = _one_notebook_job(e2e, ["de"], 600, "churn-jobs-killed")
    run_id = _start(e2e, airflow_deployment, job)
    training_jobs.wait_until(lambda: any(j.secondary == "Training" for j in training_jobs.jobs.values()),
                             180, "training")  # fmt: skip
    _wait_deferred(airflow_deployment, job, run_id, ["de.run_job"])
    airflow_deployment.mark_task_failed(job.dag_id, run_id, "de.run_job")

    [fake] = training_jobs.jobs.values()
    training_jobs.wait_until(lambda: fake.status == "Stopped", 60, "stopped")
    assert training_jobs.statuses(fake.name)[-2:] == [("Stopping", "Stopping"), ("Stopped", "Stopped")]
    assert fake.process is not None and fake.process.poll() is not None
    airflow_deployment.wait_for_run_state(job.dag_id, run_id, ("failed",), timeout=120)


def test_job_waits_hold_no_worker_slot(
    e2e: E2E, training_jobs: StrictTrainingJobs, airflow_deployment: Deployment
) -> None:
    """While the jobs run, their tasks are deferred: no task runs on a worker and the API pool (4 slots)
    has none occupied, whatever the number of jobs."""
    values = ["de", "fr", "nl"]
    job = _one_notebook_job(e2e, values, 15, "churn-jobs-slots")
    run_id = _start(e2e, airflow_deployment, job)
    tasks = [f"{value}.run_job" for value in values]
    _wait_deferred(airflow_deployment, job, run_id, tasks)

    states = airflow_deployment.task_instances(job.dag_id, run_id)
    assert [t for t, ti in states.items() if ti["state"] in ("running", "queued")] == []
    pool = airflow_deployment.api("GET", f"/api/v2/pools/{POOL}")
    assert (pool["occupied_slots"], pool["running_slots"], pool["deferred_slots"]) == (0, 0, 3), pool
    assert len(training_jobs.running()) == 3

    result = airflow_deployment.wait(job.dag_id, run_id, timeout=300)
    assert result.state == "success", tries_told(result)


def _wait_deferred(deployment: Deployment, job: Job, run_id: str, task_ids: list[str]) -> None:
    def deferred() -> bool:
        states = deployment.task_instances(job.dag_id, run_id)
        return all(states.get(t, {}).get("state") == "deferred" for t in task_ids)

    deadline = time.monotonic() + 180
    while not deferred():
        assert time.monotonic() < deadline, deployment.task_instances(job.dag_id, run_id)
        time.sleep(0.5)
