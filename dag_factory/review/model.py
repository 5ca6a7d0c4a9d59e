"""The review of one DAG: what `dag-factory plan` shows and `dag-factory diff` compares, as typed data.

Built by review.plan_view.describe from the plan and the spec, read by attribute in every renderer and in
diff.compare. `Review.to_json()` is the `plan --format json` document: the fields in their order, a field
named after a Python keyword written without its trailing underscore (`global_` is `global`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Schedule:
    cron: str | None  # the cron or preset; None: manual, or on assets
    assets: tuple[str, ...]  # run when all of these were updated
    text: str  # in words


@dataclass(frozen=True)
class Compute:
    instance_type: str
    volume_size_gb: int
    isolation: str
    max_parallel: int
    timeout: str  # the group's, as the spec writes it


@dataclass(frozen=True)
class FanOut:
    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Parameters:
    global_: dict[str, Any]  # every notebook's
    per_value: dict[str, dict[str, Any]]
    per_notebook: dict[str, dict[str, Any]]  # by notebook stem, only those with parameters of their own


@dataclass(frozen=True)
class FormField:
    """One field of Airflow's trigger form: what a manual run may override."""

    type: str | list[str]  # the JSON schema type
    default: Any


@dataclass(frozen=True)
class TaskRow:
    """One task of the first group, the fan-out value shown as `<name>`."""

    task_id: str
    kind: str
    after: tuple[str, ...]
    detail: str
    timeout: str  # in words; "-": none of its own


@dataclass(frozen=True)
class Publish:
    """A delivery target's one asset event per run, after every value's delivery to it."""

    task_id: str
    asset: str
    after: tuple[str, ...]


@dataclass(frozen=True)
class Timeout:
    seconds: int
    owner: str  # who sets it: the spec's field, the platform file's, or dag-factory


@dataclass(frozen=True)
class Timeouts:
    """Every timeout of a group."""

    group: Timeout
    notebooks: dict[str, Timeout]  # by notebook stem
    create: Timeout
    prepare: Timeout
    deliver: Timeout
    teardown: Timeout
    api_call: Timeout


@dataclass(frozen=True)
class RetryPolicy:
    infrastructure: int
    notebook: dict[str, int]  # by notebook stem: retries of its own error or timeout
    delay: str
    backoff: float
    max_delay: str
    lifecycle: int  # create, stop and delete


@dataclass(frozen=True)
class ReviewEstimate:
    instances: int
    instance_type: str
    timeout: str
    instance_hours_max: float
    usd_per_hour: float | None
    cost_max_usd: float | None


@dataclass(frozen=True)
class Review:
    """Everything a reviewer needs about the DAG of one environment."""

    dag_id: str
    env: str
    backend: str
    owner: str
    description: str
    schedule: Schedule
    start_date: str
    catchup: bool
    retries: int
    retry_delay: str
    tags: tuple[str, ...]
    notify: dict[str, list[str]]
    compute: Compute
    fan_out: FanOut | None
    parameters: Parameters
    trigger_form: dict[str, FormField]  # what a manual run may override (docs/operations.md)
    groups: tuple[str, ...]
    tasks: tuple[TaskRow, ...]
    deliver: tuple[str, ...]  # each target's label
    publish: tuple[Publish, ...]
    timeouts: Timeouts
    retry_policy: RetryPolicy
    instance_max_age: str | None  # SageMaker only
    code: str
    estimate: ReviewEstimate

    def to_json(self) -> dict[str, Any]:
        """The review as plain data for json.dumps (`plan --format json`)."""
        return asdict(self, dict_factory=_json_object)


def _json_object(fields: list[tuple[str, Any]]) -> dict[str, Any]:
    return {name.removesuffix("_"): value for name, value in fields}
