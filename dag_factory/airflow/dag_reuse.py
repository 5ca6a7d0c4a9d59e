"""One DAG per plan in a local run's processes: the DAG file parsed again returns the DAG already built.

Airflow parses the DAG file again wherever it runs a task (every task process: 40-50 ms of building the
DAG's operators) and, in ``dag.test()``, once more to write it to the metadata DB. In a local run all of
those are the run's child process or forks of it, which built the same DAG from the same plan moments
before (a fork gets its own copy: what a task changes on it stays in that task's process). The child
turns reuse on (dag_factory.airflow.run_child); anywhere else (the DAG processor, a production worker,
tests) every parse builds its DAG.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from dag_factory.plan.model import DagPlan

_built: list[tuple[DagPlan, DAG]] = []
_on = False


def reuse_built_dags() -> None:
    """From now on, in this process and its forks, a DAG of a plan built before is that DAG."""
    global _on
    _on = True


def dag_for(plan: DagPlan, build: Callable[[DagPlan], DAG]) -> DAG:
    """The DAG of ``plan``: the one built before for an equal plan when reuse is on, else ``build(plan)``."""
    if not _on:
        return build(plan)
    for known, dag in _built:
        if known == plan:
            return dag
    dag = build(plan)
    _built.append((plan, dag))
    return dag
