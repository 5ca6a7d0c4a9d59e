"""The example job on the `sagemaker-job` backend: each value a SageMaker Training Job (the strict fake of
tests/servers/sagemaker_jobs.py runs its container on this machine), waits deferred to a real triggerer of
the real scheduler (tests/servers/airflow.py's deployment), rows into a real PostgreSQL."""

from __future__ import annotations

import json

import pytest

from dag_factory.airflow.jobs import JOB_NAME_XCOM
from dag_factory.plan.report import BILLABLE_XCOM
from tests.e2e.harness import DATE, E2E, injected_source, tries_told
from tests.servers.airflow import Deployment
from tests.servers.sagemaker_jobs import StrictTrainingJobs

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
