"""The one life cycle of a notebook instance (compute.sagemaker), against AWS's rules and latencies."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from dag_factory.compute import aws
from dag_factory.compute.naming import ENV_TAG, FACTORY_TAG, encode_tag_value
from dag_factory.compute.sagemaker import (
    GONE,
    InstanceError,
    InstanceFailed,
    NameTaken,
    advance,
    create_instance,
    drive,
    is_permanent,
    next_step,
    security_fields,
)
from dag_factory.spec.platform import InstanceSecurity
from tests.servers.sagemaker import ROLE_ARN, wait_for_status
from tests.servers.sagemaker_rules import StrictNotebooks, lifecycle_config


@pytest.mark.parametrize(
    ("status", "in_service", "stopped", "gone"),
    [
        (GONE, "create", "done", "done"),
        ("Pending", "wait", "wait", "wait"),
        ("InService", "done", "stop", "stop"),
        ("Stopping", "wait", "wait", "wait"),
        ("Stopped", "start", "done", "delete"),
        ("Failed", "replace", "done", "delete"),
        ("Deleting", "wait", "done", "wait"),  # waited for, never deleted twice
        ("Updating", "wait", "wait", "wait"),
        ("InMaintenance", "wait", "wait", "wait"),
        ("PendingMaintenance", "done", "stop", "stop"),
    ],
)
def test_next_step(status: str, in_service: str, stopped: str, gone: str) -> None:
    assert (next_step(status, "in_service"), next_step(status, "stopped"), next_step(status, "gone")) == (
        in_service,
        stopped,
        gone,
    )


def test_an_unknown_status_is_an_error() -> None:
    with pytest.raises(InstanceError, match="notebook instance is Exploding; it cannot become in service"):
        next_step("Exploding", "in_service")


def _create(client: Any, name: str, **kwargs: Any) -> None:
    client.create_notebook_instance(
        NotebookInstanceName=name, InstanceType="ml.t3.medium", RoleArn=ROLE_ARN, **kwargs
    )


@pytest.mark.integration
def test_advance_makes_one_call_per_step_and_waits_in_between(strict_aws: StrictNotebooks) -> None:
    client = boto3.client("sagemaker")
    seen = []
    deadline = time.monotonic() + 60
    while (progress := advance(client, "nb-a", "in_service", lambda: _create(client, "nb-a"))).step != "done":
        assert time.monotonic() < deadline, f"nb-a not in service within 60 s: {seen[-3:]}"
        seen.append((progress.status, progress.step))
    assert seen[0] == (GONE, "create") and set(seen[1:]) == {("Pending", "wait")}
    seen = []
    deadline = time.monotonic() + 60
    while (progress := advance(client, "nb-a", "gone")).step != "done":
        assert time.monotonic() < deadline, f"nb-a not gone within 60 s: {seen[-3:]}"
        seen.append((progress.status, progress.step))
    compact = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
    assert compact == [
        ("InService", "stop"), ("Stopping", "wait"), ("Stopped", "delete"), ("Deleting", "wait")
    ]  # fmt: skip
    assert strict_aws.rejected == []  # never a call AWS refuses
    assert strict_aws.statuses("nb-a") == [
        "Pending",
        "InService",
        "Stopping",
        "Stopped",
        "Deleting",
        "Deleted",
    ]


@pytest.mark.integration
def test_a_failed_instance_is_deleted_and_the_caller_retries(strict_aws: StrictNotebooks) -> None:
    client = boto3.client("sagemaker")
    lifecycle_config(client, "on-start")
    strict_aws.fail_lifecycle("on-start", times=1)
    create = lambda: _create(client, "nb-f", LifecycleConfigName="on-start")  # noqa: E731
    assert advance(client, "nb-f", "in_service", create).step == "create"
    wait_for_status(client, "nb-f", "Failed")
    with pytest.raises(
        InstanceFailed, match=r"nb-f is Failed \(Notebook Instance Lifecycle Config .* a retry"
    ):
        advance(client, "nb-f", "in_service", create)
    # the retry: waits for Deleting, then creates a new one, which comes up
    status = drive(client, "nb-f", "in_service", timeout_s=30, poll_s=0.1, create=create)
    assert status == "InService"
    assert strict_aws.statuses("nb-f") == ["Pending", "Failed", "Deleting", "Deleted", "Pending", "InService"]


@pytest.mark.integration
def test_a_stopped_instance_is_started(strict_aws: StrictNotebooks) -> None:
    client = boto3.client("sagemaker")
    strict_aws.auto_stop(1)
    status = drive(
        client, "nb-s", "in_service", timeout_s=30, poll_s=0.1, create=lambda: _create(client, "nb-s")
    )
    assert status == "InService"
    assert strict_aws.statuses("nb-s") == [
        "Pending", "InService", "Stopping", "Stopped", "Pending", "InService"
    ]  # fmt: skip


@pytest.mark.integration
def test_drive_gives_up_after_its_timeout(strict_aws: StrictNotebooks) -> None:
    client = boto3.client("sagemaker")
    strict_aws.latencies = type(strict_aws.latencies)(pending_s=30)
    with pytest.raises(InstanceError, match="nb-t still Pending after 1s"):
        drive(client, "nb-t", "in_service", timeout_s=1, poll_s=0.2, create=lambda: _create(client, "nb-t"))
    # the time is up right after the call that created it: the message says what it is now, not what it
    # was before that call (it said "still Deleted" when a loaded machine made the create take 1 s)
    with pytest.raises(InstanceError, match="nb-u still Pending after 0s"):
        drive(client, "nb-u", "in_service", timeout_s=0, poll_s=0.2, create=lambda: _create(client, "nb-u"))


@pytest.mark.integration
def test_only_create_input_errors_are_permanent(strict_aws: StrictNotebooks) -> None:
    client = boto3.client("sagemaker")
    with pytest.raises(ClientError) as bad_tag:
        _create(client, "nb-p", Tags=[{"Key": "owner", "Value": "Data Science (EU)"}])
    assert is_permanent(bad_tag.value)
    strict_aws.quotas = {"ml.t3.medium": 0}
    with pytest.raises(ClientError) as quota:
        _create(client, "nb-q")
    assert quota.value.response["Error"]["Code"] == "ResourceLimitExceeded" and not is_permanent(quota.value)
    with pytest.raises(ClientError) as missing:
        client.stop_notebook_instance(NotebookInstanceName="nb-none")
    assert not is_permanent(missing.value)
    assert not is_permanent(RuntimeError("x"))


SCHEDULED = "scheduled__2026-01-05T04:00:00+00:00"
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _request(name: str, run_id: str = SCHEDULED, security: InstanceSecurity | None = None) -> dict[str, Any]:
    """A create as the product's sensor sends it: the run's identity tags and the hardening."""
    tags = {FACTORY_TAG: "true", ENV_TAG: "prod", "dag_id": "churn-model", "run_id": run_id, "group": "de"}
    return {
        "NotebookInstanceName": name,
        "InstanceType": "ml.t3.medium",
        "RoleArn": ROLE_ARN,
        "Tags": [{"Key": k, "Value": encode_tag_value(v)} for k, v in tags.items()],
        **security_fields(**(security or InstanceSecurity()).model_dump()),
    }


@pytest.mark.integration
def test_create_is_idempotent(strict_aws: StrictNotebooks) -> None:
    """A create whose answer was lost (botocore retried it), or whose instance is not described yet,
    finds its own instance under the name instead of failing on the duplicate."""
    client = aws.client("sagemaker")  # the product's client: adaptive retries
    request = _request("nb-prod-churn-model-de")
    create = lambda: create_instance(client, request)  # noqa: E731

    strict_aws.lose_answers("CreateNotebookInstance", 1)
    assert advance(client, "nb-prod-churn-model-de", "in_service", create).step == "create"
    assert strict_aws.lost == [("CreateNotebookInstance", "nb-prod-churn-model-de")]
    [(action, name, message)] = strict_aws.rejected  # botocore's retry met the instance
    assert (action, name) == ("CreateNotebookInstance", "nb-prod-churn-model-de") and "duplicate" in message

    strict_aws.hide("nb-prod-churn-model-de", 1)  # the next look at it says RecordNotFound
    assert advance(client, "nb-prod-churn-model-de", "in_service", create).step == "create"
    assert len(strict_aws.rejected) == 2  # refused as a duplicate again, and found again
    assert drive(client, "nb-prod-churn-model-de", "in_service", timeout_s=30, poll_s=0.1, create=create) == (
        "InService"
    )
    assert strict_aws.statuses("nb-prod-churn-model-de") == ["Pending", "InService"]  # made once


@pytest.mark.integration
def test_a_name_held_by_another_run_is_left_alone(strict_aws: StrictNotebooks) -> None:
    client = aws.client("sagemaker")
    create_instance(client, _request("nb-prod-churn-model-de", run_id="scheduled__2026-01-12T04:00:00+00:00"))
    with pytest.raises(NameTaken) as taken:
        create_instance(client, _request("nb-prod-churn-model-de"))
    assert str(taken.value) == (
        "notebook instance nb-prod-churn-model-de exists and is not this run's "
        "(its run_id=scheduled__2026-01-12T04:00:00+00:00; "
        "this run's run_id=scheduled__2026-01-05T04:00:00+00:00): "
        "it is left alone; delete it if it is a leftover, then clear this task"
    )
    assert not {"Stopping", "Deleting"} & set(strict_aws.statuses("nb-prod-churn-model-de"))  # not touched


def test_hardening_is_on_unless_the_platform_file_says_otherwise() -> None:
    assert security_fields(**InstanceSecurity().model_dump()) == {
        "DirectInternetAccess": "Disabled",
        "RootAccess": "Disabled",
        "InstanceMetadataServiceConfiguration": {"MinimumInstanceMetadataServiceVersion": "2"},
    }
    chosen = InstanceSecurity(direct_internet_access=True, root_access=True, kms_key_id=KMS_KEY)
    assert security_fields(**chosen.model_dump()) == {
        "DirectInternetAccess": "Enabled",
        "RootAccess": "Enabled",
        "InstanceMetadataServiceConfiguration": {"MinimumInstanceMetadataServiceVersion": "2"},
        "KmsKeyId": KMS_KEY,
    }


@pytest.mark.integration
def test_instances_are_created_hardened(strict_aws: StrictNotebooks) -> None:
    """What the create sends is what the instance has (the fake keeps it), and the fake refuses a
    factory instance that leaves a hardening field to AWS's defaults."""
    client = aws.client("sagemaker")
    create_instance(client, _request("nb-hardened", security=InstanceSecurity(kms_key_id=KMS_KEY)))
    described = client.describe_notebook_instance(NotebookInstanceName="nb-hardened")
    assert {k: described.get(k) for k in ("DirectInternetAccess", "RootAccess", "KmsKeyId")} == {
        "DirectInternetAccess": "Disabled",
        "RootAccess": "Disabled",
        "KmsKeyId": KMS_KEY,
    }
    assert described["InstanceMetadataServiceConfiguration"] == {"MinimumInstanceMetadataServiceVersion": "2"}
    bare = {k: v for k, v in _request("nb-bare").items() if k not in ("RootAccess", "DirectInternetAccess")}
    with pytest.raises(ClientError, match="must be hardened: DirectInternetAccess, RootAccess not sent"):
        create_instance(client, bare)
