"""SageMaker Training Jobs as the `sagemaker-job` backend's compute (boto only, no Airflow): the job's name,
its CreateTrainingJob request, and whose fault a job that did not complete is.

The job's container downloads the group's script (dag_factory.plan.job_script, rendered by the task and
put beside the deployed code) and runs it: the entrypoint is a few words, as AWS allows entrypoint and
argument strings of at most 256 characters, and the script is tens of KB.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from dag_factory.compute.naming import FACTORY_TAG, MAX_INSTANCE_NAME, encode_tag_value
from dag_factory.plan.guard import Fault, classify_exit
from dag_factory.plan.model import JobArgs

# downloads the script named by the first argument ($0 of bash -c) and runs it as the job's process
ENTRYPOINT = [
    "bash", "-c", 'script=$(mktemp) && aws s3 cp --only-show-errors "$0" "$script" && exec bash "$script"'
]  # fmt: skip

# FailureReason prefixes SageMaker uses for faults of its own: retried (CapacityError: no capacity of the
# instance type; InternalServerError; ResourceLimitExceeded and ThrottlingException at its API)
_RETRIED_REASONS = ("CapacityError", "InternalServerError", "ResourceLimitExceeded", "ThrottlingException")
_EXIT_CODE = re.compile(r"exit code:? *(\d+)")
TERMINAL = ("Completed", "Failed", "Stopped")


def job_name(dag_id: str, run_id: str, group: str, try_number: int, *, env: str) -> str:
    """A Training Job name: AWS keeps every name for good, so each try gets its own.
    `[a-zA-Z0-9](-*[a-zA-Z0-9])*`, at most 63 characters: readable head, hash for uniqueness."""
    digest = hashlib.sha256(f"{env}\n{dag_id}\n{run_id}\n{group}\n{try_number}".encode()).hexdigest()[:10]
    head = re.sub(r"[^a-zA-Z0-9]+", "-", f"job-{env}-{dag_id}-{group}").strip("-")
    tail = f"t{try_number}-{digest}"
    head = head[: MAX_INSTANCE_NAME - len(tail) - 1].rstrip("-")
    return f"{head}-{tail}"


def training_job_request(args: JobArgs, name: str, script_uri: str, run_id: str) -> dict[str, Any]:
    """CreateTrainingJob's request for one try of a group's job."""
    resources: dict[str, Any] = {
        "InstanceType": args.instance_type,
        "InstanceCount": 1,
        "VolumeSizeInGB": args.volume_size_gb,
    }
    if args.volume_kms_key_id:
        resources["VolumeKmsKeyId"] = args.volume_kms_key_id
    output: dict[str, Any] = {"S3OutputPath": args.output_path}
    if args.output_kms_key_id:
        output["KmsKeyId"] = args.output_kms_key_id
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": args.timeout_s}
    tags = {**args.tags, FACTORY_TAG: "true", "dag_id": args.dag_id, "run_id": run_id, "group": args.group}
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": args.image_uri,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ENTRYPOINT,
            "ContainerArguments": [script_uri],
        },
        "RoleArn": args.role_arn,
        "OutputDataConfig": output,
        "ResourceConfig": resources,
        "VpcConfig": {"Subnets": list(args.subnet_ids), "SecurityGroupIds": list(args.security_group_ids)},
        "StoppingCondition": stopping,
        "Tags": [{"Key": key, "Value": encode_tag_value(value)} for key, value in tags.items()],
    }
    if args.max_wait_s is not None:
        request["EnableManagedSpotTraining"] = True
        stopping["MaxWaitTimeInSeconds"] = args.max_wait_s
    return request


@dataclass(frozen=True)
class JobOutcome:
    """A finished job as its DescribeTrainingJob says."""

    status: str  # Completed, Failed, Stopped
    secondary: str  # e.g. MaxRuntimeExceeded, Stopped, Failed
    reason: str  # FailureReason ("" when completed)
    billable_s: int | None

    @classmethod
    def of(cls, description: dict[str, Any]) -> JobOutcome:
        billable = description.get("BillableTimeInSeconds")
        return cls(
            status=str(description.get("TrainingJobStatus", "")),
            secondary=str(description.get("SecondaryStatus", "")),
            reason=str(description.get("FailureReason", "")),
            billable_s=int(billable) if billable is not None else None,
        )

    def as_event(self) -> dict[str, Any]:
        return {"status": self.status, "secondary": self.secondary, "reason": self.reason,
                "billable_s": self.billable_s}  # fmt: skip

    def fault(self) -> tuple[Fault, str]:
        """Whose fault a job that did not complete is, and what to say: the job's exit status (the guard's,
        dag_factory.plan.guard) for an AlgorithmError; SageMaker's own errors are the infrastructure's."""
        if self.status == "Stopped" and self.secondary == "MaxRuntimeExceeded":
            return "timeout", "SageMaker stopped it at its MaxRuntimeInSeconds (compute.timeout)"
        if self.status == "Stopped":
            return "infrastructure", "the job was stopped"
        if self.reason.startswith(_RETRIED_REASONS):
            return "infrastructure", self.reason
        found = _EXIT_CODE.search(self.reason)
        if self.reason.startswith("AlgorithmError") and found:
            return classify_exit(int(found.group(1))), self.reason
        return "infrastructure", self.reason or f"the job ended {self.status}"


def stop_job(client: Any, name: str) -> bool:
    """StopTrainingJob unless the job is over (or was never made); whether a stop was asked."""
    from botocore.exceptions import ClientError

    try:
        status = client.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
        if status in TERMINAL or status == "Stopping":
            return False
        client.stop_training_job(TrainingJobName=name)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ValidationException":  # no such job
            return False
        raise
