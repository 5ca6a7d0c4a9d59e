"""A manual run's choices (dag_factory.plan.params) in Airflow: the DAG's `params`, the macro that puts
a run's parameter overrides into papermill's command, and the check before each task that skips the
fan-out values the run did not choose (their instances are never created)."""

from __future__ import annotations

import functools
from typing import Any

from airflow.sdk import Param

from dag_factory.airflow.environment import check_environment
from dag_factory.plan.model import DagPlan
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
    return {OVERRIDES_MACRO: functools.partial(overrides, defaults=defaults)}


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
