"""`dag-factory graph`: a picture of the generated DAG (graphviz `dot`), readable for many values.

Each group is one row, left to right: value -> create -> resolve -> prepare -> notebooks -> deliver.
The teardown every group has (stop_instance, delete_instance, trigger rule all_done) is drawn once,
in a legend, with the lanes: a group waits for the group `max_parallel` rows above it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dag_factory.errors import DagFactoryError
from dag_factory.extras import require
from dag_factory.load.specs import LoadedSpec
from dag_factory.plan.model import CreateInstanceArgs, DagPlan, GroupPlan, TaskPlan
from dag_factory.plan.planner import plan_dag
from dag_factory.review.plan_view import duration, schedule_of

FORMATS = ("svg", "png", "pdf", "dot")
TEARDOWN = ("stop_instance", "delete_instance")
_COLORS = {
    "create_instance": "#dbeafe",
    "resolve_ip": "#dbeafe",
    "prepare": "#e0e7ff",
    "notebook": "#dcfce7",
    "deliver": "#fef3c7",
}


class GraphError(DagFactoryError):
    pass


def _rows(group: GroupPlan) -> list[tuple[str, list[TaskPlan]]]:
    """(row label, tasks left to right): one row per group; a shared group gets one row per value."""
    work = [t for t in group.tasks if t.task_id not in TEARDOWN]
    if len(group.values) <= 1:
        return [(group.values[0] if group.values else group.group_id, work)]
    setup = [t for t in work if "__" not in t.task_id]
    return [(v, [*setup, *(t for t in work if t.task_id.endswith(f"__{v}"))]) for v in group.values]


def _label(task: TaskPlan) -> str:
    name = task.task_id.split("__", 1)[0]
    timeout = task.args.timeout_s
    if isinstance(task.args, CreateInstanceArgs):
        return f"{name}\\n{task.args.instance_type}"
    if task.kind in ("notebook", "prepare") and timeout:
        return f"{name}\\n≤ {duration(timeout)}"
    return name


def build_graph(plan: DagPlan) -> Any:
    graphviz = require("graph", "graphviz", "dag-factory graph")

    title = (
        f"{plan.dag_id} ({plan.env}): {schedule_of(plan).text}; "
        f"{len(plan.groups)} group(s), at most {plan.max_parallel} at once; "
        f"≤ {plan.estimate.instance_hours_max:g} instance-hours per run"
    )
    attrs = {"rankdir": "LR", "label": title, "labelloc": "t", "fontname": "Helvetica", "nodesep": "0.15"}
    dot = graphviz.Digraph(plan.dag_id, graph_attr=attrs)
    dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="10")
    rows = [(group, row, tasks) for group in plan.groups for row, tasks in _rows(group)]
    for group, row, tasks in reversed(rows):  # dot stacks LR ranks bottom-up: first value on top
        head = f"row_{row}"
        after = f" (after {group.after_group})" if group.after_group else ""
        dot.node(head, f"{row}{after}", shape="plaintext", style="", fontsize="12")
        previous = head
        for task in tasks:
            node = f"{group.group_id}.{task.task_id}"
            dot.node(node, _label(task), fillcolor=_COLORS.get(task.kind, "#f3f4f6"))
            dot.edge(previous, node)
            previous = node
    with dot.subgraph(name="cluster_legend") as legend:
        legend.attr(label="in every group (teardown, trigger rule all_done)", style="dashed", fontsize="10")
        legend.node("legend.last", "last notebook", style="rounded,dashed")
        legend.node("legend.stop", "stop_instance", fillcolor="#fee2e2")
        legend.node("legend.delete", "delete_instance", fillcolor="#fee2e2")
        legend.edge("legend.last", "legend.stop", style="dashed")
        legend.edge("legend.stop", "legend.delete", style="dashed")
    return dot


def draw(loaded: LoadedSpec, env: str, out: Path) -> Path:
    """Render the DAG of one environment to `out`; the format comes from its suffix."""
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise GraphError(f"cannot draw {out}: use a .svg, .png, .pdf or .dot file name")
    dot = build_graph(plan_dag(loaded, env))
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        out.write_text(dot.source)
        return out
    graphviz = require("graph", "graphviz", "dag-factory graph")

    try:
        out.write_bytes(dot.pipe(format=fmt))
    except graphviz.ExecutableNotFound:
        raise GraphError("graphviz's `dot` is not installed (apt-get install graphviz)") from None
    return out
