"""Scheduler listener: a task cleared without its instance's setups gets them back, whichever way it
was cleared; a finished run's note links its report.

Airflow clears a task's setups and teardowns with it when the task is cleared by name (the UI's Clear
on a task), but not when a run is cleared with "only failed" (the repair of a run): that clears the
failed notebook and its upstream-failed deliveries, and they would run again on an instance their
teardown already deleted, with the old instance's IP and host key in XCom. When such a run starts
again, this listener clears what a clear by name would have cleared with those tasks (their setups
and teardowns, by Airflow's own `partial_subset`), and the run report, so that each failed value
re-runs from a fresh, fully prepared instance and the report shows the repaired run.

When a run ends (success or failure), its note (markdown on the run's page in the UI) becomes a link to
the run report, as the report task's worker computed it (its extra link's XCom). A task cannot do this
itself: Airflow 3's Execution API, the only way a task reaches the metadata DB, sets a note only on a
run it triggers (`POST /dag-runs/{dag_id}/{run_id}`), never on an existing one. A note someone wrote is
left alone.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

from dag_factory.plan.model import DAG_TAG
from dag_factory.plan.report import REPORT_TASK

log = logging.getLogger(__name__)

_FINISHED = ("success", "failed", "upstream_failed", "skipped")


def companions_to_clear(dag: Any, states: dict[str, str | None], tries: dict[str, int]) -> list[str]:
    """Task ids of finished tasks that a clear by name of the run's cleared tasks would have cleared.

    `states`/`tries`: task id -> state / try number of the run's task instances. A cleared task has
    no state and has run before; a new run's tasks have not run yet, so nothing is cleared then.
    """
    cleared = sorted(task_id for task_id, state in states.items() if state is None and tries.get(task_id, 0))
    if not cleared:
        return []
    related = set(
        dag.partial_subset(task_ids=cleared, include_downstream=False, include_upstream=False).task_dict
    )
    related.add(REPORT_TASK)
    return sorted(t for t in related if states.get(t) in _FINISHED)


@hookimpl
def on_dag_run_running(dag_run: Any, msg: str) -> None:
    """Called by the scheduler when a queued run starts ("started"), a cleared run included."""
    dag = getattr(dag_run, "dag", None)
    if msg != "started" or dag is None or DAG_TAG not in (dag.tags or ()):
        return
    from airflow.models.taskinstance import clear_task_instances
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None:
        return
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances(session=session)}
    states = {task_id: ti.state for task_id, ti in tis.items()}  # a str enum: compares as its value
    tries = {task_id: int(ti.try_number or 0) for task_id, ti in tis.items()}
    companions = companions_to_clear(dag, states, tries)
    if not companions:
        return
    log.info("run %s: clearing %s with the tasks cleared before it started", dag_run.run_id, companions)
    clear_task_instances([tis[t] for t in companions], session, dag_run_state=False)


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    note_the_report(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    note_the_report(dag_run)


def note_the_report(dag_run: Any) -> None:
    """Set the run's note to a link to its report, once its report task has written it."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import select
    from sqlalchemy.orm import object_session

    from dag_factory.airflow.links import RunReportLink, is_run_note, run_note

    session = object_session(dag_run)
    if session is None or not is_run_note(dag_run.note):
        return
    state = session.scalar(
        select(TaskInstance.state).where(
            TaskInstance.dag_id == dag_run.dag_id,
            TaskInstance.run_id == dag_run.run_id,
            TaskInstance.task_id == REPORT_TASK,
            TaskInstance.map_index == -1,
        )
    )
    if state != "success":  # no report task (not a factory DAG), or it wrote no report
        return
    row = session.execute(
        select(XComModel.value).where(
            XComModel.dag_id == dag_run.dag_id,
            XComModel.run_id == dag_run.run_id,
            XComModel.task_id == REPORT_TASK,
            XComModel.key == RunReportLink().xcom_key,
        )
    ).first()
    url = XComModel.deserialize_value(row) if row is not None else None
    if isinstance(url, str) and url:
        dag_run.note = run_note(url)
        log.info("run %s: its note links the run report", dag_run.run_id)
