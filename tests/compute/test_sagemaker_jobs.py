"""The job backend's names, CreateTrainingJob request and verdict on a job that did not complete."""

from __future__ import annotations

import re

import pytest

from dag_factory.compute.sagemaker_jobs import ENTRYPOINT, JobOutcome, job_name, training_job_request
from dag_factory.load.specs import load_platform, load_spec
from dag_factory.plan.model import JobArgs
from dag_factory.plan.planner import plan_dag
from tests.job_platform import IMAGE_URI, write_job_platform
from tests.paths import REPO

NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")


def test_a_job_name_is_valid_for_aws_and_new_for_every_try() -> None:
    run_id = "manual__2026-01-05T04:00:00+00:00"
    names = {job_name("churn-model" * 5, run_id, "de", n, env="preprod") for n in (1, 2, 3)}
    assert len(names) == 3
    for name in names:
        assert NAME.fullmatch(name) and len(name) <= 63, name
    assert job_name("churn-model", run_id, "de", 1, env="preprod").startswith(
        "job-preprod-churn-model-de-t1-"
    )


def _job(tmp_path, **platform) -> JobArgs:  # type: ignore[no-untyped-def]
    loaded = load_spec(REPO / "project_configs" / "churn-model.yaml",
                       load_platform(write_job_platform(tmp_path, **platform)))  # fmt: skip
    args = plan_dag(loaded, "preprod").groups[0].tasks[0].args
    assert isinstance(args, JobArgs)
    return args


def test_the_request_runs_the_script_with_the_platforms_image_network_and_limits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    job = _job(tmp_path, volume_kms_key_id="alias/jobs", managed_spot={"max_wait": "6h"})
    request = training_job_request(job, "job-x", "s3://code/churn-model/_jobs/job-x.sh", "manual__1")
    assert request["AlgorithmSpecification"] == {
        "TrainingImage": IMAGE_URI,
        "TrainingInputMode": "File",
        "ContainerEntrypoint": ENTRYPOINT,
        "ContainerArguments": ["s3://code/churn-model/_jobs/job-x.sh"],
    }
    # AWS allows entrypoint and argument strings of 256 characters at most
    assert all(len(word) <= 256 for word in ENTRYPOINT)
    resources = {"InstanceType": "ml.t3.large", "InstanceCount": 1, "VolumeSizeInGB": 30}
    assert request["ResourceConfig"] == {**resources, "VolumeKmsKeyId": "alias/jobs"}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 4 * 3600, "MaxWaitTimeInSeconds": 6 * 3600}
    assert request["EnableManagedSpotTraining"] is True
    assert request["VpcConfig"] == {"Subnets": ["subnet-0a1b2c3d4e5f60001"],
                                    "SecurityGroupIds": ["sg-0a1b2c3d4e5f60001"]}  # fmt: skip
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    spec_tags = {"project": "churn-model", "owner": "growth-data-science", "env": "preprod"}
    run_tags = {"dag-factory": "true", "dag_id": "churn-model", "run_id": "manual__1", "group": "de"}
    assert tags == {**spec_tags, **run_tags}


def test_on_demand_jobs_have_no_spot_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    request = training_job_request(_job(tmp_path), "job-x", "s3://c/x.sh", "r")
    assert "EnableManagedSpotTraining" not in request
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 4 * 3600}
    assert "VolumeKmsKeyId" not in request["ResourceConfig"]


@pytest.mark.parametrize(
    ("status", "secondary", "reason", "fault"),
    [
        (
            "Failed",
            "Failed",
            "AlgorithmError: dag-factory: the notebook raised ValueError, exit code: 85",
            "notebook",
        ),
        ("Failed", "Failed", "AlgorithmError: , exit code: 86", "input"),
        ("Failed", "Failed", "AlgorithmError: , exit code: 124", "timeout"),
        ("Failed", "Failed", "AlgorithmError: , exit code: 1", "infrastructure"),
        (
            "Failed",
            "Failed",
            "CapacityError: Unable to provision requested ML compute capacity.",
            "infrastructure",
        ),
        ("Failed", "Failed", "InternalServerError: We encountered an internal error.", "infrastructure"),
        ("Stopped", "MaxRuntimeExceeded", "", "timeout"),
        ("Stopped", "Stopped", "", "infrastructure"),
    ],
)
def test_whose_fault_a_job_that_did_not_complete_is(
    status: str, secondary: str, reason: str, fault: str
) -> None:
    assert JobOutcome(status, secondary, reason, 12).fault()[0] == fault
