"""Orphan sweeper: find SageMaker notebook instances this factory created and nobody deleted.

A worker killed mid-run (OOM, node drain, a lost executor) never runs its teardown tasks, so its
notebook instance keeps running and costing money. Every instance the factory creates carries the
tag ``dag-factory=true`` (compute.naming.FACTORY_TAG); this module lists the instances of one environment's
account and region, keeps those with the tag whose ``CreationTime`` is older than a given age, and
stops (if needed) and deletes them. Untagged instances and young ones are never touched.

boto only (the region from the platform environment; boto3 honours ``AWS_ENDPOINT_URL`` and the
usual credential chain); no Airflow import, so ``dag-factory gc`` runs from cron or CI as well.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dag_factory.compute import aws
from dag_factory.compute.naming import FACTORY_TAG
from dag_factory.compute.sagemaker import InstanceError, drive


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
    """A SageMaker client for ``region`` with the factory's adaptive retries (throttling-safe)."""
    return aws.client("sagemaker", region)


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
        if age < older_than:
            continue
        tags = _tags(client, summary["NotebookInstanceArn"])
        if tags.get(FACTORY_TAG) != "true":
            continue
        found.append(
            Orphan(summary["NotebookInstanceName"], summary["NotebookInstanceStatus"], created, age, tags)
        )
    return sorted(found, key=lambda o: o.created)


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
    failures: tuple[type[Exception], ...] = (*aws.api_errors(), InstanceError)
    results = []
    for orphan in find_orphans(client, older_than, now):
        if dry_run:
            results.append(SweepResult(orphan, "would delete"))
            continue
        # Deleting: someone else's delete, waited for, never deleted twice
        action = "already gone" if orphan.status == "Deleting" else "deleted"
        try:
            drive(client, orphan.name, "gone", timeout_s=timeout_s, poll_s=poll_s)
            results.append(SweepResult(orphan, action))
        except failures as exc:
            results.append(SweepResult(orphan, "failed", f"{type(exc).__name__}: {exc}"))
    return results
