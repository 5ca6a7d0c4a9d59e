"""Where a local run's wall time went: start-up, then the critical path through the tasks, then shut-down.

The fan-out values run side by side, so summing task durations says little. The critical path does:
from the task that ended last, step back to its upstream task that ended last, and so on to the first
task. Its tasks and the gaps between them add up, with the start-up before it and the shut-down after
it, to the run's wall time exactly. Each piece gets a category:

- ``startup``: from the start of the run to its first task: validation, deploy, the metadata DB,
  the run's process starting Airflow and the Execution API, parsing the DAG, creating the DAG run;
- ``environment``: creating, preparing and removing the work directory and its virtualenv;
- ``notebooks``: the notebook tasks (papermill, its kernel, the notebook's own code);
- ``delivery``: loading the outputs into the warehouse;
- ``task_overhead``: the trivial tasks (resolve_ip, stop_instance) and the gaps between tasks (the
  executor picking up a task, the task process starting);
- ``shutdown``: from the last task's end to the end of the run (the executor stopping, reading results).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dag_factory.local.run_records import TaskInstanceResult
from dag_factory.plan.model import DagPlan

CATEGORIES = ("startup", "environment", "notebooks", "delivery", "task_overhead", "shutdown")
_KIND_CATEGORY = {
    "create_instance": "environment",
    "prepare": "environment",
    "delete_instance": "environment",
    "notebook": "notebooks",
    "deliver": "delivery",
    "resolve_ip": "task_overhead",
    "stop_instance": "task_overhead",
}


@dataclass(frozen=True)
class Step:
    task_id: str
    category: str
    gap: float  # seconds between the upstream task's end (or the run's first task) and this start
    duration: float


def _upstream(plan: DagPlan) -> dict[str, list[str]]:
    """Full task id -> full ids of the tasks it waits for (lanes included)."""
    edges: dict[str, list[str]] = {}
    for group in plan.groups:
        for task in group.tasks:
            ups = [f"{group.group_id}.{u}" for u in task.upstream]
            if task.kind == "create_instance" and group.after_group:
                ups.append(f"{group.after_group}.delete_instance")
            edges[f"{group.group_id}.{task.task_id}"] = ups
    return edges


def _kinds(plan: DagPlan) -> dict[str, str]:
    return {f"{g.group_id}.{t.task_id}": t.kind for g in plan.groups for t in g.tasks}


def critical_path(plan: DagPlan, tis: Sequence[TaskInstanceResult]) -> list[Step]:
    """The chain of tasks that ended the run, first task first (empty when no task ran)."""
    ran = {ti.task_id: ti for ti in tis if ti.start is not None and ti.end is not None}
    if not ran:
        return []
    upstream, kinds = _upstream(plan), _kinds(plan)
    chain = [max(ran.values(), key=lambda ti: (ti.end, ti.task_id))]
    while True:
        ups = [ran[u] for u in upstream.get(chain[-1].task_id, []) if u in ran]
        if not ups:
            break
        chain.append(max(ups, key=lambda ti: (ti.end, ti.task_id)))
    chain.reverse()
    first_start = min(ti.start for ti in ran.values() if ti.start is not None)
    steps = []
    previous_end = first_start
    for ti in chain:
        assert ti.start is not None and ti.end is not None
        category = _KIND_CATEGORY.get(kinds.get(ti.task_id, ""), "task_overhead")
        gap = max(0.0, (ti.start - previous_end).total_seconds())
        steps.append(Step(ti.task_id, category, gap, (ti.end - ti.start).total_seconds()))
        previous_end = max(previous_end, ti.end)
    return steps


def split_run(
    plan: DagPlan, tis: Sequence[TaskInstanceResult], started: datetime, finished: datetime
) -> dict[str, float]:
    """Seconds per category (:data:`CATEGORIES`) plus ``total``; the categories add up to the total."""
    total = (finished - started).total_seconds()
    split = dict.fromkeys(CATEGORIES, 0.0)
    steps = critical_path(plan, tis)
    ran = [ti for ti in tis if ti.start is not None and ti.end is not None]
    if not steps:
        split["startup"] = total
    else:
        first = min(ti.start for ti in ran if ti.start is not None)
        last = max(ti.end for ti in ran if ti.end is not None)
        split["startup"] = (first - started).total_seconds()
        split["shutdown"] = (finished - last).total_seconds()
        for step in steps:
            split["task_overhead"] += step.gap
            split[step.category] += step.duration
        # overlapping upstream ends can make the chain differ from [first, last] by rounding only
        split["task_overhead"] += (last - first).total_seconds() - sum(s.gap + s.duration for s in steps)
    split = {k: round(v, 2) for k, v in split.items()}
    split["total"] = round(total, 2)
    return split


def render_split(split: dict[str, float]) -> str:
    """One line for the end of `dag-factory run`."""
    parts = [f"{name.replace('_', ' ')} {split[name]:.1f} s" for name in CATEGORIES if split.get(name)]
    return f"time: {split['total']:.1f} s = " + " + ".join(parts)
