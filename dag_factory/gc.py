"""Orphan sweeper: find SageMaker notebook instances this factory created and nobody deleted.

A worker killed mid-run (OOM, node drain, a lost executor) never runs its teardown tasks, so its
notebook instance keeps running and costing money. Every instance the factory creates carries the
tag ``dag-factory=true`` (naming.FACTORY_TAG); this module lists the instances of one environment's
account and region, keeps those with the tag whose ``CreationTime`` is older than a given age, and
stops (if needed) and deletes them. Untagged instances and young ones are never touched.

Plain boto3 (the region from the platform environment; boto3 honours ``AWS_ENDPOINT_URL`` and the
usual credential chain); no Airflow import, so ``dag-factory gc`` runs from cron or CI as well.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dag_factory.errors import DagFactoryError
from dag_factory.naming import FACTORY_TAG
from dag_factory.tasks import ADAPTIVE_RETRIES  # the same retry policy as the DAG's SageMaker tasks

GONE = "Deleted"
RUNNING = frozenset({"InService", "Pending", "Updating"})


class GcError(DagFactoryError):
    pass


@dataclass(frozen=True)
class Orphan:
    """A tagged notebook instance older than the limit."""

    name: str
    status: str
    created: dt.datetime
    age: dt.timedelta
    tags: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        where = ", ".join(f"{k} {self.tags[k]}" for k in ("dag_id", "run_id", "group") if k in self.tags)
        return f"{self.name} ({self.status}, age {format_age(self.age)}{', ' + where if where else ''})"


@dataclass(frozen=True)
class SweepResult:
    orphan: Orphan
    action: str  # "deleted", "would delete", "already gone", "failed"
    error: str = ""


def format_age(age: dt.timedelta) -> str:
    minutes = int(age.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m"]
    return "".join(parts)


def sagemaker_client(region: str) -> Any:
    """A boto3 SageMaker client for ``region`` with adaptive retries (throttling-safe)."""
    import boto3
    from botocore.config import Config

    return boto3.client("sagemaker", region_name=region, config=Config(**ADAPTIVE_RETRIES))


def _instances(client: Any) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"MaxResults": 100}
        if token:
            kwargs["NextToken"] = token
        page = client.list_notebook_instances(**kwargs)
        yield from page.get("NotebookInstances", [])
        token = page.get("NextToken")
        if not token:
            return


def _tags(client: Any, arn: str) -> dict[str, str]:
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


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def find_orphans(client: Any, older_than: dt.timedelta, now: dt.datetime | None = None) -> list[Orphan]:
    """Tagged (``dag-factory=true``) instances created more than ``older_than`` before ``now``."""
    now = _aware(now or dt.datetime.now(dt.UTC))
    found = []
    for summary in _instances(client):
        created = _aware(summary["CreationTime"])
        age = now - created
        if age < older_than or summary.get("NotebookInstanceStatus") == "Deleting":
            continue
        tags = _tags(client, summary["NotebookInstanceArn"])
        if tags.get(FACTORY_TAG) != "true":
            continue
        found.append(
            Orphan(summary["NotebookInstanceName"], summary["NotebookInstanceStatus"], created, age, tags)
        )
    return sorted(found, key=lambda o: o.created)


def status_of(client: Any, name: str) -> str:
    """The instance's status, or 'Deleted' when SageMaker no longer knows it."""
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


def wait_for(
    client: Any,
    name: str,
    wanted: set[str],
    timeout_s: float,
    poll_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status = status_of(client, name)
        if status in wanted:
            return status
        if time.monotonic() > deadline:
            raise GcError(f"notebook instance {name} still {status} after {timeout_s:.0f}s")
        sleep(poll_s)


def remove_instance(client: Any, name: str, timeout_s: float = 900, poll_s: float = 5) -> str:
    """Stop (if running) and delete one instance; 'deleted' or 'already gone'."""
    status = status_of(client, name)
    if status in ("Pending", "Updating", "Stopping"):
        status = wait_for(client, name, {"InService", "Stopped", "Failed", GONE}, timeout_s, poll_s)
    if status == GONE or status == "Deleting":
        return "already gone"
    if status == "InService":
        client.stop_notebook_instance(NotebookInstanceName=name)
        status = wait_for(client, name, {"Stopped", "Failed", GONE}, timeout_s, poll_s)
        if status == GONE:
            return "already gone"
    client.delete_notebook_instance(NotebookInstanceName=name)
    return "deleted"


def sweep(
    client: Any,
    older_than: dt.timedelta,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    timeout_s: float = 900,
    poll_s: float = 5,
) -> list[SweepResult]:
    """Find the orphans and remove them (or only report them with ``dry_run``)."""
    from botocore.exceptions import BotoCoreError, ClientError

    results = []
    for orphan in find_orphans(client, older_than, now):
        if dry_run:
            results.append(SweepResult(orphan, "would delete"))
            continue
        try:
            results.append(SweepResult(orphan, remove_instance(client, orphan.name, timeout_s, poll_s)))
        except (ClientError, BotoCoreError, GcError) as exc:
            results.append(SweepResult(orphan, "failed", f"{type(exc).__name__}: {exc}"))
    return results
