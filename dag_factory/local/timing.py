"""Where a local run's wall time went: the CLI, the metadata DB, Airflow's start, then the critical path
through the tasks, then the shut-down.

The fan-out values run side by side, so summing task durations says little. The critical path does:
from the task that ended last (the run report, a teardown after every other task), step back to its
upstream task that ended last, and so on to the first task. Its tasks and the gaps between them add
up, with the pieces before and after it, to the run's wall time exactly. Each piece gets a category
(:data:`CATEGORIES`, in the order they happen):

- ``cli``: from the CLI's process start (interpreter, imports, validating and planning the spec) to
  the end of the deploy into the local code bucket;
- ``db``: the metadata DB ready (the Airflow home: a migrated DB copied or migrated);
- ``airflow``: Airflow's start, up to the first task: the Execution API (started or reused), the run's
  child process importing Airflow, parsing the DAG, creating the DAG run, the executor and scheduler
  picking up the first task;
- ``environment``: creating, preparing and removing the work directory and its virtualenv;
- ``notebooks``: the notebook tasks (papermill, its kernel, the notebook's own code);
- ``delivery``: loading the outputs into the warehouse;
- ``task_overhead``: the trivial tasks (resolve_ip, stop_instance, the publish tasks, the report) and
  the gaps between tasks (the executor picking up a task, the task process starting);
- ``shutdown``: from the last task's end to the end of the run (the executor stopping, reading results).

One function, :func:`split_run`, makes the split: the `time:` line of `dag-factory run`, the run report
and benchmarks/local_run.py all show its numbers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dag_factory.local.run_records import TaskInstanceResult
from dag_factory.plan.model import DagPlan
from dag_factory.plan.report import REPORT_TASK, TIME_SPLIT, TIME_SPLIT_LABELS

CATEGORIES, LABELS = TIME_SPLIT, TIME_SPLIT_LABELS  # their home is the report's, which shows them too
_KIND_CATEGORY = {
    "create_instance": "environment",
    "prepare": "environment",
    "delete_instance": "environment",
    "notebook": "notebooks",
    "deliver": "delivery",
    "resolve_ip": "task_overhead",
    "stop_instance": "task_overhead",
}  # the tasks outside the groups (publish_*, report) are task_overhead too


@dataclass(frozen=True)
class RunClock:
    """The moments (aware UTC) that cut a run's wall time outside its tasks."""

    started: datetime  # the CLI's process started (or the run, when it did not come from the CLI)
    deployed: datetime  # the project deployed into the local code bucket
    home_ready: datetime  # the Airflow home and its metadata DB ready
    finished: datetime  # the run's results read, the work directories removed


@dataclass(frozen=True)
class Step:
    task_id: str
    category: str
    gap: float  # seconds between the upstream task's end (or the run's first task) and this start
    duration: float


def process_started() -> datetime:
    """When this process started (Linux: its start in /proc against the uptime, to 10 ms); now elsewhere."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime: clock ticks after boot
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return datetime.now(UTC)
    return datetime.now(UTC) - timedelta(seconds=max(0.0, age))


def _upstream(plan: DagPlan) -> dict[str, list[str]]:
    """Full task id -> full ids of the tasks it waits for (lanes, the publish tasks and the report
    included), as dag_factory.airflow.build wires them."""
    edges: dict[str, list[str]] = {}
    for group in plan.groups:
        for task in group.tasks:
            ups = [f"{group.group_id}.{u}" for u in task.upstream]
            if task.kind == "create_instance" and group.after_group:
                ups.append(f"{group.after_group}.delete_instance")
            edges[f"{group.group_id}.{task.task_id}"] = ups
    for publish in plan.publish:
        edges[publish.task_id] = list(publish.deliveries)
    edges[REPORT_TASK] = list(edges)  # a teardown after every other task, directly or through another
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


def split_run(plan: DagPlan, tis: Sequence[TaskInstanceResult], clock: RunClock) -> dict[str, float]:
    """Seconds per category (:data:`CATEGORIES`) plus ``total`` (the wall time from ``clock.started``
    to ``clock.finished``), to 10 ms; the categories add up to the total exactly (10 ms rounding goes to
    the task overhead, or to Airflow's start when no task ran)."""
    split = dict.fromkeys(CATEGORIES, 0.0)
    split["cli"] = (clock.deployed - clock.started).total_seconds()
    split["db"] = (clock.home_ready - clock.deployed).total_seconds()
    steps = critical_path(plan, tis)
    ran = [ti for ti in tis if ti.start is not None and ti.end is not None]
    if not steps:
        split["airflow"] = (clock.finished - clock.home_ready).total_seconds()
    else:
        first = min(ti.start for ti in ran if ti.start is not None)
        last = max(ti.end for ti in ran if ti.end is not None)
        split["airflow"] = (first - clock.home_ready).total_seconds()
        split["shutdown"] = (clock.finished - last).total_seconds()
        for step in steps:
            split["task_overhead"] += step.gap
            split[step.category] += step.duration
        # a chain whose tasks overlap (ends clamped above) differs from [first, last]: the rest is overhead
        split["task_overhead"] += (last - first).total_seconds() - sum(s.gap + s.duration for s in steps)
    total = round((clock.finished - clock.started).total_seconds(), 2)
    split = {k: round(v, 2) for k, v in split.items()}
    rest = "task_overhead" if steps else "airflow"
    split[rest] = round(split[rest] + total - sum(split.values()), 2)
    split["total"] = total
    return split


def render_split(split: dict[str, float]) -> str:
    """One line for the end of `dag-factory run`: the categories that took time, in their order."""
    parts = [f"{LABELS[name]} {split[name]:.1f} s" for name in CATEGORIES if split.get(name)]
    return f"time: {split['total']:.1f} s = " + " + ".join(parts)
