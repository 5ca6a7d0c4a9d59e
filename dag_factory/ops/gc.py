"""Orphan sweeper: find SageMaker notebook instances this factory created and no live run will delete.

A worker killed mid-run (OOM, node drain, a lost executor), a run marked failed by hand, a teardown
that gave up: the notebook instance keeps running and costing money. Every instance the factory creates
carries the tags ``dag-factory=true`` (compute.naming.FACTORY_TAG), ``env`` (the platform environment),
``dag_id``, ``run_id`` (encoded for AWS), ``group`` and ``dag-factory-max-age`` (how long a run of its
DAG can keep it: its spec's timeouts and retries, see plan.planner.instance_max_age_s). An instance is an
orphan when

- it has the factory tag and the environment's tag: untagged instances and other environments' (two
  environments may share an account) are never touched;
- it is older than ``--older-than``, or by default than its own max-age tag (6 h without one);
- and its DAG run is over: Airflow's REST API is asked for the DAG's queued and running runs, and an
  instance whose name belongs to one of them is spared, whatever its age. When Airflow cannot be asked,
  nothing is deleted.

Orphans are stopped (if needed) and deleted through compute.sagemaker's life cycle, all at once: one API
call per instance per round, then one wait for all. boto only; no Airflow import, so ``dag-factory gc``
runs from cron or CI as well.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from dag_factory.compute import aws
from dag_factory.compute.naming import (
    ENV_TAG,
    FACTORY_TAG,
    MAX_AGE_TAG,
    decode_tag_value,
    instance_name,
)
from dag_factory.compute.sagemaker import InstanceError, advance, tags_of
from dag_factory.errors import DagFactoryError

DEFAULT_MAX_AGE = dt.timedelta(hours=6)  # for an instance without a max-age tag


class RunCheckError(DagFactoryError):
    """Airflow could not say which runs are live: nothing may be deleted."""


class LiveRuns(Protocol):
    def live_run_ids(self, dag_id: str) -> set[str]:
        """Run ids of ``dag_id`` that are queued or running."""


@dataclass(frozen=True)
class AirflowRuns:
    """Airflow's REST API (``GET /api/v2/dags/{dag_id}/dagRuns?state=queued&state=running``)."""

    url: str  # the api-server's base URL, e.g. https://airflow.example.com
    token: str | None = None  # a bearer token (DAG_FACTORY_AIRFLOW_TOKEN); none for the simple auth manager
    timeout_s: float = 30

    def live_run_ids(self, dag_id: str) -> set[str]:
        found: set[str] = set()
        offset = 0
        while True:
            query = urllib.parse.urlencode(
                [("state", "queued"), ("state", "running"), ("limit", "100"), ("offset", str(offset))]
            )
            path = f"/api/v2/dags/{urllib.parse.quote(dag_id, safe='')}/dagRuns?{query}"
            page = self._get(path)
            if page is None:  # Airflow does not know the DAG: none of its runs is live
                return found
            runs = page.get("dag_runs", [])
            found.update(str(run["dag_run_id"]) for run in runs)
            offset += len(runs)
            if not runs or offset >= int(page.get("total_entries", 0)):
                return found

    def _get(self, path: str) -> dict[str, Any] | None:
        request = urllib.request.Request(self.url.rstrip("/") + path, headers={"Accept": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                data: dict[str, Any] = json.loads(answer.read())
                return data
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise RunCheckError(f"Airflow at {self.url} answered {exc.code} to {path}: {exc.reason}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RunCheckError(f"cannot ask Airflow at {self.url} which runs are live: {exc}") from exc


@dataclass(frozen=True)
class Orphan:
    """A tagged notebook instance of this environment older than its limit."""

    name: str
    status: str
    created: dt.datetime
    age: dt.timedelta
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def run_id(self) -> str | None:
        return decode_tag_value(self.tags["run_id"]) if "run_id" in self.tags else None

    def describe(self) -> str:
        shown = {**self.tags, "run_id": self.run_id or self.tags.get("run_id", "")}
        where = ", ".join(f"{k} {shown[k]}" for k in ("dag_id", "run_id", "group") if shown.get(k))
        return f"{self.name} ({self.status}, age {format_age(self.age)}{', ' + where if where else ''})"


@dataclass(frozen=True)
class SweepResult:
    orphan: Orphan
    action: str  # "deleted", "would delete", "already gone", "spared", "failed"
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


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def max_age(tags: dict[str, str], older_than: dt.timedelta | None) -> dt.timedelta:
    """``older_than`` when given, else the instance's own max-age tag, else DEFAULT_MAX_AGE."""
    if older_than is not None:
        return older_than
    try:
        return dt.timedelta(seconds=int(tags[MAX_AGE_TAG]))
    except (KeyError, ValueError):
        return DEFAULT_MAX_AGE


def find_orphans(
    client: Any, env: str, older_than: dt.timedelta | None = None, now: dt.datetime | None = None
) -> list[Orphan]:
    """This environment's tagged instances older than their limit (live runs are not checked here)."""
    now = _aware(now or dt.datetime.now(dt.UTC))
    found = []
    for summary in _instances(client):
        created = _aware(summary["CreationTime"])
        age = now - created
        if older_than is not None and age < older_than:
            continue  # no tags needed to know
        tags = tags_of(client, summary["NotebookInstanceArn"])
        if tags.get(FACTORY_TAG) != "true" or tags.get(ENV_TAG) != env or age < max_age(tags, older_than):
            continue
        found.append(
            Orphan(summary["NotebookInstanceName"], summary["NotebookInstanceStatus"], created, age, tags)
        )
    return sorted(found, key=lambda o: o.created)


def _belongs_to_live_run(orphan: Orphan, env: str, runs: LiveRuns, cache: dict[str, set[str]]) -> bool:
    dag_id, group = orphan.tags.get("dag_id"), orphan.tags.get("group")
    if not dag_id or group is None:
        return False
    if dag_id not in cache:
        cache[dag_id] = runs.live_run_ids(dag_id)
    return any(instance_name(dag_id, run_id, group, env=env) == orphan.name for run_id in cache[dag_id])


def sweep(
    client: Any,
    env: str,
    runs: LiveRuns,
    older_than: dt.timedelta | None = None,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    timeout_s: float = 1800,
    poll_s: float = 5,
) -> list[SweepResult]:
    """Find the orphans, spare those of live runs, and remove the others (or only report them)."""
    results: dict[str, SweepResult] = {}
    cache: dict[str, set[str]] = {}
    pending: list[Orphan] = []
    for orphan in find_orphans(client, env, older_than, now):
        if _belongs_to_live_run(orphan, env, runs, cache):
            results[orphan.name] = SweepResult(orphan, "spared", "its run is still live")
        elif dry_run:
            results[orphan.name] = SweepResult(orphan, "would delete")
        else:
            pending.append(orphan)
    _remove(client, pending, results, timeout_s, poll_s)
    return [results[name] for name in sorted(results, key=lambda n: results[n].orphan.created)]


def _remove(
    client: Any, orphans: list[Orphan], results: dict[str, SweepResult], timeout_s: float, poll_s: float
) -> None:
    """Drive every orphan to gone together: one step each per round, then one wait for all."""
    failures: tuple[type[Exception], ...] = (*aws.api_errors(), InstanceError)
    deadline = time.monotonic() + timeout_s
    left = list(orphans)
    while left:
        for orphan in list(left):
            try:
                progress = advance(client, orphan.name, "gone")
            except failures as exc:
                results[orphan.name] = SweepResult(orphan, "failed", f"{type(exc).__name__}: {exc}")
                left.remove(orphan)
                continue
            if progress.step == "done":
                # Deleting when found: someone else's delete, waited for, never deleted twice
                action = "already gone" if orphan.status == "Deleting" else "deleted"
                results[orphan.name] = SweepResult(orphan, action)
                left.remove(orphan)
        if left and time.monotonic() > deadline:
            for orphan in left:
                results[orphan.name] = SweepResult(orphan, "failed", f"still there after {timeout_s:.0f}s")
            return
        if left:
            time.sleep(poll_s)
