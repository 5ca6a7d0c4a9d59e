"""A SageMaker notebook instance's life cycle, boto only: one home for the Airflow sensors and gc.

Every caller drives an instance towards a goal (in service, stopped, gone) with the same state machine:
`next_step(status, goal)` says which API call (if any) moves it on; `advance` makes one status read and
at most that one call (an Airflow sensor pokes it, in reschedule mode, so no worker slot or API-pool
slot is held while AWS works); `drive` repeats `advance` until the goal is reached (gc, tests).
SageMaker's own rules it encodes: a Pending or Updating instance can be neither stopped nor deleted; a
running instance must be stopped before it is deleted; a Stopped instance is started again; a Deleting
instance is waited for, never deleted twice; a Failed instance (e.g. its lifecycle configuration failed)
is deleted, and whoever wanted it in service retries (`InstanceFailed`), so a replacement is bounded by
the caller's retries.

`create_instance` is CreateNotebookInstance made idempotent: a create whose answer was lost (botocore
retried it) or whose instance DescribeNotebookInstance does not show yet meets its own instance under
the name, recognises it by the run's tags and goes on waiting for it. `security_fields` are the
hardening every create sends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from dag_factory.compute.naming import IDENTITY_TAGS
from dag_factory.errors import DagFactoryError

log = logging.getLogger("dag_factory.compute.sagemaker")

GONE = "Deleted"  # not a SageMaker status: the instance no longer exists
Goal = Literal["in_service", "stopped", "gone"]
Step = Literal["done", "wait", "create", "start", "stop", "delete", "replace"]

# InService and PendingMaintenance run (a maintenance is only scheduled); InMaintenance is waited for.
_STEPS: dict[Goal, dict[str, Step]] = {
    "in_service": {
        GONE: "create",
        "Pending": "wait",
        "Updating": "wait",
        "InMaintenance": "wait",
        "InService": "done",
        "PendingMaintenance": "done",
        "Stopping": "wait",
        "Stopped": "start",
        "Failed": "replace",
        "Deleting": "wait",
    },
    "stopped": {
        GONE: "done",
        "Pending": "wait",
        "Updating": "wait",
        "InMaintenance": "wait",
        "InService": "stop",
        "PendingMaintenance": "stop",
        "Stopping": "wait",
        "Stopped": "done",
        "Failed": "done",
        "Deleting": "done",
    },
    "gone": {
        GONE: "done",
        "Pending": "wait",
        "Updating": "wait",
        "InMaintenance": "wait",
        "InService": "stop",
        "PendingMaintenance": "stop",
        "Stopping": "wait",
        "Stopped": "delete",
        "Failed": "delete",
        "Deleting": "wait",
    },
}


class InstanceError(DagFactoryError):
    """An instance did not reach its goal: an unknown status, or still changing when time ran out."""


class InstanceFailed(InstanceError):
    """The instance was Failed (e.g. its lifecycle configuration failed); it is being deleted, and a
    retry of whoever wanted it in service creates a new one."""


class NameTaken(InstanceError):
    """An instance of this name exists and is not this run's: it is left alone, and a retry cannot help."""


@dataclass(frozen=True)
class Progress:
    """What one `advance` saw and did."""

    status: str  # the status it read (GONE when the instance did not exist)
    step: Step  # the step it took ("done": goal reached, "wait": nothing to do but wait)


def next_step(status: str, goal: Goal) -> Step:
    """The API call that moves an instance in ``status`` towards ``goal``."""
    step = _STEPS[goal].get(status)
    if step is None:
        raise InstanceError(f"notebook instance is {status}; it cannot become {goal.replace('_', ' ')}")
    return step


def describe(client: Any, name: str) -> dict[str, Any] | None:
    """DescribeNotebookInstance's answer, or None when SageMaker no longer knows the instance."""
    from botocore.exceptions import ClientError

    try:
        answer: dict[str, Any] = client.describe_notebook_instance(NotebookInstanceName=name)
        return answer
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = str(error.get("Message", "")).lower()
        if error.get("Code") == "ValidationException" and (
            "recordnotfound" in message or "does not exist" in message or "not found" in message
        ):
            return None
        raise


def tags_of(client: Any, arn: str) -> dict[str, str]:
    """Every tag of a SageMaker resource (ListTags, all pages)."""
    tags: dict[str, str] = {}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"ResourceArn": arn}
        if token:
            kwargs["NextToken"] = token
        page = client.list_tags(**kwargs)
        tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        token = page.get("NextToken")
        if not token:
            return tags


def security_fields(
    *, direct_internet_access: bool, root_access: bool, kms_key_id: str | None
) -> dict[str, Any]:
    """CreateNotebookInstance's hardening, always sent (AWS's defaults are internet access, root access
    and IMDSv1 all on). Lifecycle configurations run as root whatever RootAccess says."""
    fields: dict[str, Any] = {
        "DirectInternetAccess": "Enabled" if direct_internet_access else "Disabled",
        "RootAccess": "Enabled" if root_access else "Disabled",
        "InstanceMetadataServiceConfiguration": {"MinimumInstanceMetadataServiceVersion": "2"},
    }
    if kms_key_id:
        fields["KmsKeyId"] = kms_key_id
    return fields


def _is_duplicate_name(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    error = exc.response.get("Error", {})
    message = str(error.get("Message", "")).lower()
    return error.get("Code") == "ValidationException" and (
        "duplicate" in message or "already exists" in message
    )


def create_instance(client: Any, request: dict[str, Any]) -> None:
    """CreateNotebookInstance with ``request``; when the name is taken by an instance carrying this
    request's identity tags (compute.naming.IDENTITY_TAGS), that instance is this run's: its create
    went through but the answer was lost (botocore retried it), or DescribeNotebookInstance did not
    show it yet. Anyone else's instance raises NameTaken."""
    name = request["NotebookInstanceName"]
    try:
        client.create_notebook_instance(**request)
        return
    except Exception as exc:
        if not _is_duplicate_name(exc):
            raise
    described = describe(client, name)
    if described is None:  # created, not visible yet (or deleted since): the next look decides
        log.info("notebook instance %s exists but is not described yet: waiting for it", name)
        return
    theirs = tags_of(client, str(described["NotebookInstanceArn"]))
    ours = {tag["Key"]: tag["Value"] for tag in request.get("Tags", [])}
    differ = [key for key in IDENTITY_TAGS if theirs.get(key) != ours.get(key)]
    if differ:
        raise NameTaken(
            f"notebook instance {name} exists and is not this run's (its "
            + ", ".join(f"{key}={theirs.get(key, '(none)')}" for key in differ)
            + "; this run's "
            + ", ".join(f"{key}={ours.get(key, '(none)')}" for key in differ)
            + "): it is left alone; delete it if it is a leftover, then clear this task"
        )
    log.info(
        "notebook instance %s already exists with this run's tags (an earlier create's answer was lost)", name
    )


def take_step(client: Any, name: str, step: Step, create: Callable[[], None] | None = None) -> None:
    """Make the one API call of ``step`` ('done' and 'wait' make none)."""
    if step == "create":
        if create is None:
            raise InstanceError(f"notebook instance {name} does not exist")
        log.info("creating notebook instance %s", name)
        create()
    elif step == "start":
        log.info("starting notebook instance %s", name)
        client.start_notebook_instance(NotebookInstanceName=name)
    elif step == "stop":
        log.info("stopping notebook instance %s", name)
        client.stop_notebook_instance(NotebookInstanceName=name)
    elif step in ("delete", "replace"):
        log.info("deleting notebook instance %s", name)
        client.delete_notebook_instance(NotebookInstanceName=name)


def status_of(described: dict[str, Any] | None) -> str:
    """The status in a `describe` answer; GONE when there was none."""
    return GONE if described is None else str(described["NotebookInstanceStatus"])


def advance(client: Any, name: str, goal: Goal, create: Callable[[], None] | None = None) -> Progress:
    """One status read and at most one API call towards ``goal``.

    Raises InstanceFailed after deleting a Failed instance on the way to in_service.
    """
    described = describe(client, name)
    status = status_of(described)
    step = next_step(status, goal)
    take_step(client, name, step, create)
    if step == "replace":
        reason = (described or {}).get("FailureReason") or "no reason given"
        raise InstanceFailed(
            f"notebook instance {name} is Failed ({reason}): deleting it; a retry creates a new one"
        )
    return Progress(status, step)


def drive(
    client: Any,
    name: str,
    goal: Goal,
    *,
    timeout_s: float,
    poll_s: float,
    create: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Move the instance to ``goal``, polling every ``poll_s``; the final status (GONE when deleted)."""
    deadline = time.monotonic() + timeout_s
    while True:
        progress = advance(client, name, goal, create)
        if progress.step == "done":
            return progress.status
        if time.monotonic() > deadline:
            # what it is now, not what it was before this round's call (a create just made it Pending)
            status = status_of(describe(client, name))
            if next_step(status, goal) == "done":
                return status
            raise InstanceError(f"notebook instance {name} still {status} after {timeout_s:.0f}s")
        sleep(poll_s)


def private_ip(sagemaker: Any, ec2: Any, name: str) -> str:
    """Notebook instance -> its network interface -> the interface's private IP."""
    described = sagemaker.describe_notebook_instance(NotebookInstanceName=name)
    eni = described.get("NetworkInterfaceId")
    if not eni:
        status = described.get("NotebookInstanceStatus")
        raise InstanceError(f"notebook instance {name} has no network interface (status {status})")
    interfaces = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"]
    if not interfaces or not interfaces[0].get("PrivateIpAddress"):
        raise InstanceError(f"network interface {eni} of {name} has no private ip")
    ip = str(interfaces[0]["PrivateIpAddress"])
    log.info("notebook instance %s: interface %s, private ip %s", name, eni, ip)
    return ip


# Where an instance's lifecycle configuration publishes its SSH host key (ssh.host_keys: pinned).
HOST_KEY_FOLDER = "_host_keys"


def host_key_object(name: str) -> str:
    return f"{HOST_KEY_FOLDER}/{name}.pub"


def published_host_key(
    s3: Any,
    bucket: str,
    name: str,
    *,
    timeout_s: float = 300,
    poll_s: float = 5,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The host key `<type> <base64>` the instance published to s3://<bucket>/_host_keys/<name>.pub.

    Its lifecycle configuration writes it when the instance starts, so it may lag InService a little.
    """
    from botocore.exceptions import ClientError

    key = host_key_object(name)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("ascii", "replace")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise
        else:
            words = text.split()
            if len(words) < 2:
                raise InstanceError(f"s3://{bucket}/{key} holds no ssh host key ('<type> <base64>')")
            return f"{words[0]} {words[1]}"
        if time.monotonic() > deadline:
            raise InstanceError(
                f"notebook instance {name} published no ssh host key to s3://{bucket}/{key} within "
                f"{timeout_s:.0f}s: check its lifecycle configuration (ssh.host_keys: pinned)"
            )
        sleep(poll_s)


def is_permanent(exc: BaseException) -> bool:
    """An AWS answer a retry cannot change: CreateNotebookInstance's input validation (a bad name, tag,
    instance type, volume size, subnet or lifecycle configuration). Throttling, quotas
    (ResourceLimitExceeded), capacity and network errors are worth retrying."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = exc.response.get("Error", {}).get("Code")
    return bool(code == "ValidationException" and exc.operation_name == "CreateNotebookInstance")
