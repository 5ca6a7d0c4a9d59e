"""A SageMaker notebook instance's life cycle, boto only: one home for the Airflow operators and gc.

Every caller drives an instance towards a goal (in service, stopped, gone) with the same state machine:
`next_step(status, goal)` says which API call (if any) moves it on, and `drive` repeats
status -> step -> wait until the goal is reached. SageMaker's own rules it encodes: a Pending or
Updating instance can be neither stopped nor deleted; a running instance must be stopped before it is
deleted; a Deleting instance is waited for, never deleted twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from dag_factory.errors import DagFactoryError

log = logging.getLogger("dag_factory.compute.sagemaker")

GONE = "Deleted"  # not a SageMaker status: the instance no longer exists
Goal = Literal["in_service", "stopped", "gone"]
Step = Literal["done", "wait", "create", "start", "stop", "delete"]

_STEPS: dict[Goal, dict[str, Step]] = {
    "in_service": {
        GONE: "create",
        "Pending": "wait",
        "Updating": "wait",
        "InService": "done",
        "Stopping": "wait",
        "Stopped": "start",
        "Deleting": "wait",
    },
    "stopped": {
        GONE: "done",
        "Pending": "wait",
        "Updating": "wait",
        "InService": "stop",
        "Stopping": "wait",
        "Stopped": "done",
        "Failed": "done",
        "Deleting": "done",
    },
    "gone": {
        GONE: "done",
        "Pending": "wait",
        "Updating": "wait",
        "InService": "stop",
        "Stopping": "wait",
        "Stopped": "delete",
        "Failed": "delete",
        "Deleting": "wait",
    },
}


class InstanceError(DagFactoryError):
    """An instance did not reach its goal: Failed, or still changing when time ran out."""


def next_step(status: str, goal: Goal) -> Step:
    """The API call that moves an instance in ``status`` towards ``goal``."""
    step = _STEPS[goal].get(status)
    if step is None:  # Failed on the way to in_service; an unknown status
        raise InstanceError(f"notebook instance is {status}; it cannot become {goal.replace('_', ' ')}")
    return step


def status_of(client: Any, name: str) -> str:
    """The instance's status, or GONE when SageMaker no longer knows it."""
    from botocore.exceptions import ClientError

    try:
        return str(client.describe_notebook_instance(NotebookInstanceName=name)["NotebookInstanceStatus"])
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = str(error.get("Message", "")).lower()
        if error.get("Code") == "ValidationException" and (
            "recordnotfound" in message or "does not exist" in message or "not found" in message
        ):
            return GONE
        raise


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
    elif step == "delete":
        log.info("deleting notebook instance %s", name)
        client.delete_notebook_instance(NotebookInstanceName=name)


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
        status = status_of(client, name)
        step = next_step(status, goal)
        if step == "done":
            return status
        if time.monotonic() > deadline:
            raise InstanceError(f"notebook instance {name} still {status} after {timeout_s:.0f}s")
        take_step(client, name, step, create)
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
