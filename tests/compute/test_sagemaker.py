"""The one life cycle of a notebook instance (compute.sagemaker), against AWS's rules and latencies."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from dag_factory.compute.sagemaker import (
    GONE,
    InstanceError,
    InstanceFailed,
    advance,
    drive,
    is_permanent,
    next_step,
)
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
