"""A run's choices in Airflow: the DAG's `params` (dag_factory.plan.params), the macros that put a run's
parameter overrides into papermill's command and name the code version the run syncs, and the check
before each task that skips the fan-out values the run did not choose (no instance is created for them)."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from typing import Any

from airflow.sdk import Param

from dag_factory.airflow.environment import check_environment
from dag_factory.plan.model import CODE_VERSION_MACRO, DagPlan
from dag_factory.plan.params import OVERRIDES_MACRO, VALUES_PARAM, overrides, task_values
from dag_factory.plan.planner import SHARED_GROUP


def dag_params(plan: DagPlan) -> dict[str, Param]:
    """The trigger form; Airflow validates a run's conf against it before the run is created."""
    return {
        name: Param(schema["default"], **{k: v for k, v in schema.items() if k != "default"})
        for name, schema in plan.params.items()
    }


def dag_macros(plan: DagPlan) -> dict[str, Any]:
    defaults = {name: schema["default"] for name, schema in plan.params.items()}
    return {
        OVERRIDES_MACRO: functools.partial(overrides, defaults=defaults),
        CODE_VERSION_MACRO: functools.partial(
            code_version, plan.code, plan.connections.get("aws", "aws_default"), plan.region
        ),
    }


def code_version(code: str, aws_conn_id: str, region: str | None, dag_run: Any) -> str:
    """The code version a run syncs: the one current when the run started (a finished run that is
    cleared starts again: it takes the version current then, as Airflow re-runs it on the latest DAG)."""
    from dag_factory.compute.code_versions import CodeStore, FolderCodeStore, S3CodeStore, version_at

    store: CodeStore
    if code.startswith("s3://"):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        bucket, _, project = code.removeprefix("s3://").partition("/")
        store = S3CodeStore(S3Hook(aws_conn_id=aws_conn_id, region_name=region).get_conn(), bucket, project)
    else:
        store = FolderCodeStore(Path(code))
    return version_at(store, run_started(dag_run))


def run_started(dag_run: Any) -> dt.datetime:
    """When a run started: the later of its start (reset when a finished run is cleared) and its
    run_after, for a run `dag.test` starts (dag-factory run), whose start_date is its logical date."""
    started: dt.datetime = max(d for d in (dag_run.start_date, dag_run.run_after) if d is not None)
    return started


def before_task(built_for: str, context: Any = None) -> None:
    """Every task's pre-execute hook: the worker's environment is the DAG's (else the task fails), and
    the task's fan-out value is one the run chose (else it is skipped, before any API call)."""
    from airflow.sdk.exceptions import AirflowSkipException

    check_environment(built_for, context)
    chosen = (context["params"] if context else {}).get(VALUES_PARAM)
    if chosen is None:
        return
    value, in_group = task_values(context["ti"].task_id, SHARED_GROUP)
    if not in_group:
        return
    if value is not None and value not in chosen:
        raise AirflowSkipException(f"{value} is not among the values this run chose: {', '.join(chosen)}")


class ChecksEnvironment:
    """A mixin for every operator of a factory DAG: before it executes, :func:`before_task` (the worker's
    environment is the DAG's; the run chose the task's value). Operator behaviour rather than a
    ``pre_execute`` callable in ``default_args``, which Airflow serialized into every task (about 900
    bytes each) and showed as Python source in the DAG's details. ``built_for`` is set by the build."""

    built_for: str = ""

    def pre_execute(self, context: Any) -> None:
        before_task(self.built_for, context)
        super().pre_execute(context)  # type: ignore[misc]
