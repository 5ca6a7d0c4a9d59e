"""The run report: what one DAG run did, per fan-out value, and what its instances cost.

Plain data and HTML, no Airflow: `report_inputs` turns a plan into the plain mapping the report task
gets (Airflow renders the run id into its paths), `build_report` joins it with what the run left
behind (task states and durations, XComs, executed notebooks), `render_html` shows it.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import re
from typing import Any

from dag_factory.plan.model import CreateWorkdirArgs, DagPlan, DeliverArgs, JobArgs, NotebookArgs
from dag_factory.plan.notebook_failure import explain_notebook_error
from dag_factory.plan.params import VALUES_PARAM, overrides
from dag_factory.plan.scripts import html_path

CREATED_XCOM = "instance_created_at"  # ISO time the instance (or local work dir) was created
DELETED_XCOM = "instance_deleted_at"  # ISO time it was confirmed gone
BILLABLE_XCOM = "billable_seconds"  # a SageMaker job's BillableTimeInSeconds (backend sagemaker-job)
JOB_TASK = "run_job"  # a sagemaker-job group's job (plan.planner makes it)
REPORT_TASK = "report"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
# A local run's time split (dag_factory.local.timing computes it, after the run): its categories in the
# order they happen, and their names in the `time:` line, the run report and the benchmark's table
TIME_SPLIT = ("cli", "db", "airflow", "environment", "notebooks", "delivery", "task_overhead", "shutdown")
TIME_SPLIT_LABELS = {
    "cli": "CLI",
    "db": "metadata DB",
    "airflow": "Airflow start",
    "environment": "environments",
    "notebooks": "notebooks",
    "delivery": "delivery",
    "task_overhead": "task overhead",
    "shutdown": "shut-down",
}


def run_folder(plan: DagPlan) -> str:
    """Where the run's outputs go (``<output>/<project>/{{ run_id }}``, local or s3://), as a template:
    every executed notebook is ``<run folder>/<value>/<notebook>.ipynb``."""
    first = next(t.args for g in plan.groups for t in g.tasks if isinstance(t.args, NotebookArgs | JobArgs))
    return first.run_folder if isinstance(first, JobArgs) else first.output_notebook.rsplit("/", 2)[0]


def target_label(target: dict[str, Any]) -> str:
    """A delivery target as the run summary and the report name it: ``duckdb:analytics.churn_scores``."""
    return f"{target['to']}:{target.get('table') or target.get('prefix', '')}"


def report_inputs(plan: DagPlan) -> dict[str, Any]:
    """What the report task needs to know about the plan, as plain (templated) data."""
    groups = []
    for group in plan.groups:
        tasks = []
        for task in group.tasks:
            entry: dict[str, Any] = {"task_id": f"{group.group_id}.{task.task_id}", "kind": task.kind}
            args = task.args
            if isinstance(args, NotebookArgs):
                entry |= {
                    "value": args.value,
                    "notebook": args.notebook,
                    "executed": args.output_notebook,
                    "html": html_path(args.output_notebook),
                }
            elif isinstance(args, DeliverArgs):
                entry |= {"value": args.partition_value, "target": target_label(args.target)}
            tasks.append(entry)
        notebooks = [t.args for t in group.tasks if isinstance(t.args, NotebookArgs)]
        parameters = {str(args.value): args.parameters for args in notebooks}
        for job in (t.args for t in group.tasks if isinstance(t.args, JobArgs)):  # a SageMaker job's group
            parameters |= job.value_parameters
        entry = {
            "group_id": group.group_id,
            "values": list(group.values),
            "tasks": tasks,
            "parameters": parameters,
        }
        create = next((t.args for t in group.tasks if t.task_id == "create_instance"), None)
        workdir = create.workdir if isinstance(create, CreateWorkdirArgs) else None
        if workdir:  # locally the instance is a work directory (on SageMaker its name is the run's)
            entry["instance"] = workdir
        groups.append(entry)
    notebook_parameters = {
        t.args.notebook: t.args.notebook_parameters
        for g in plan.groups
        for t in g.tasks
        if isinstance(t.args, NotebookArgs) and t.args.notebook_parameters
    }
    return {
        "dag_id": plan.dag_id,
        "spec": plan.spec_file,
        "notebook_parameters": notebook_parameters,  # each notebook's own, on top of its value's
        "env": plan.env,
        "backend": plan.backend,
        "fan_out": plan.fan_out_name,
        "folder": run_folder(plan),
        "code": plan.code,  # the code versions; the report names the one the run synced
        "region": plan.region,
        "form": {name: schema["default"] for name, schema in plan.params.items()},  # the trigger form
        "estimate": {
            "instance_type": plan.estimate.instance_type,
            "instances": plan.estimate.instances,
            "instance_hours_max": plan.estimate.instance_hours_max,
            "usd_per_hour": plan.estimate.usd_per_hour,
            "cost_max_usd": plan.estimate.cost_max_usd,
        },
        "groups": groups,
    }


# Airflow's default sensitive names (DEFAULT_SENSITIVE_FIELDS of its secrets masker, kept equal by
# tests/airflow/test_report_files.py): a value whose name holds one is shown as "***", as Airflow shows
# it in a log or a rendered field.
SENSITIVE_NAMES = frozenset(
    {
        "access_key", "access_token", "api_key", "apikey", "auth_header", "authorization", "bearer",
        "connection_string", "dsn", "passphrase", "passwd", "password", "private_key", "proxy",
        "proxy_password", "proxies", "secret", "service_account", "service_key", "token", "keyfile_dict",
        "webhook_url",
    }
)  # fmt: skip
REDACTED = "***"


@functools.lru_cache(maxsize=4096)  # a DAG asks about the same few names for each of its notebook tasks
def is_sensitive(name: str) -> bool:
    """Airflow's rule: the name, lower-cased and with non-word runs as "_", contains a sensitive name."""
    normalized = re.sub(r"\W+", "_", name.strip().lower())
    return any(sensitive in normalized for sensitive in SENSITIVE_NAMES)


def redacted(parameters: dict[str, Any]) -> dict[str, Any]:
    """The parameters with each sensitive one's value hidden, in nested mappings too (Airflow's rule: a
    name that, lower-cased and with non-word runs as "_", contains a sensitive name)."""

    def shown(name: str, value: Any) -> Any:
        if is_sensitive(str(name)):
            return REDACTED
        return redacted(value) if isinstance(value, dict) else value

    return {name: shown(name, value) for name, value in parameters.items()}


def failing_cell(notebook: dict[str, Any]) -> str:
    """The first cell of an executed notebook that raised, named as in the notebook the data scientist
    wrote (the contract's `explain_notebook_error`; '' when none did)."""
    return explain_notebook_error(notebook)


def _hours(created: str | None, deleted: str | None) -> float | None:
    if not created or not deleted:
        return None
    seconds = (dt.datetime.fromisoformat(deleted) - dt.datetime.fromisoformat(created)).total_seconds()
    return round(max(seconds, 0.0) / 3600, 4)


def _cost(hours: float | None, price: float | None) -> float | None:
    return round(hours * price, 4) if hours is not None and price is not None else None


def _value_entry(
    value: str | None,
    tasks: list[dict[str, Any]],
    tis: dict[str, dict[str, Any]],
    xcoms: dict[str, dict[str, Any]],
    notebooks: dict[str, dict[str, Any] | None],
) -> dict[str, Any]:
    lines = [
        {
            "task_id": t["task_id"],
            "state": tis.get(t["task_id"], {}).get("state") or "not run",
            "duration_s": tis.get(t["task_id"], {}).get("duration"),
        }
        for t in tasks
    ]
    # the value's work; a teardown's state shows in its line (as in the run summary)
    teardown = {t["task_id"] for t in tasks if t["kind"] in ("stop_instance", "delete_instance")}
    failed = [line for line in lines if line["state"] != "success" and line["task_id"] not in teardown]
    failure = ""
    if failed:
        first = failed[0]
        executed = notebooks.get(first["task_id"])
        cell = failing_cell(executed) if executed else ""
        failure = f"{first['task_id']}: {cell or first['state']}"
    delivered = {
        t["target"]: xcoms.get(t["task_id"], {}).get("return_value") for t in tasks if t["kind"] == "deliver"
    }
    rendered = [{"notebook": t["notebook"], "html": t["html"]} for t in tasks if t["kind"] == "notebook"]
    return {
        "value": value,
        "status": "failed" if failed else "success",
        "tasks": lines,
        "failure": failure,
        "rows_delivered": delivered,
        "notebooks": rendered,
    }


def _left_instance(
    group: dict[str, Any], tis: dict[str, dict[str, Any]], instance: str
) -> dict[str, Any] | None:
    """The group's instance when its create ran and its delete did not succeed: it may still exist."""
    gid = group["group_id"]
    created = tis.get(f"{gid}.create_instance", {}).get("state")
    deleted = tis.get(f"{gid}.delete_instance", {}).get("state")
    if created not in ("success", "failed") or deleted == "success":
        return None
    return {"group": gid, "instance": instance, "delete_instance": deleted or "not run"}


def build_report(
    inputs: dict[str, Any],
    run_id: str,
    tis: dict[str, dict[str, Any]],
    xcoms: dict[str, dict[str, Any]],
    notebooks: dict[str, dict[str, Any] | None],
    instances: dict[str, str] | None = None,
    conf: dict[str, Any] | None = None,
    code_version: str | None = None,
    logical_date: str | None = None,
    wall_time_s: float | None = None,
) -> dict[str, Any]:
    """`tis`: task id -> {state, duration}; `xcoms`: task id -> {key: value}; `notebooks`: notebook
    task id -> its executed notebook (None when there is none); `instances`: group id -> its instance's
    name (a local group's work directory is in `inputs`); `conf`: what the run was triggered with;
    `logical_date`: the date its notebooks got; `wall_time_s`: from the run's start to this report."""
    price = inputs["estimate"]["usd_per_hour"]
    chosen = overrides(conf, inputs.get("form", {}))
    values = []
    left = []
    total_hours = 0.0
    for group in inputs["groups"]:
        gid = group["group_id"]
        instance = group.get("instance") or (instances or {}).get(gid, gid)
        if (leftover := _left_instance(group, tis, instance)) is not None:
            left.append(leftover)
        hours = _hours(
            xcoms.get(f"{gid}.create_instance", {}).get(CREATED_XCOM),
            xcoms.get(f"{gid}.delete_instance", {}).get(DELETED_XCOM),
        )
        billable = xcoms.get(f"{gid}.{JOB_TASK}", {}).get(BILLABLE_XCOM)
        if billable is not None:  # a SageMaker job: billed per second of its run, no instance to delete
            hours = round(int(billable) / 3600, 4)
        total_hours += hours or 0.0
        instance_tasks = [t for t in group["tasks"] if t["kind"] not in ("notebook", "deliver")]
        for value in group["values"] or [None]:
            own = [t for t in group["tasks"] if t["kind"] in ("notebook", "deliver") and t["value"] == value]
            entry = _value_entry(value, instance_tasks[:3] + own + instance_tasks[3:], tis, xcoms, notebooks)
            runtime = {
                "logical_date": logical_date,
                "run_id": run_id,
                "output_prefix": f"{inputs['folder']}/{value if value is not None else gid}",
            }
            injected = {**group.get("parameters", {}).get(str(value), {}), **chosen, **runtime}
            entry |= {
                "group": gid,
                "instance_hours": hours,
                "cost_usd": _cost(hours, price),
                "parameters": redacted(injected),
            }
            values.append(entry)
    total_hours = round(total_hours, 4)
    return {
        "dag_id": inputs["dag_id"],
        "run_id": run_id,
        "logical_date": logical_date,
        "spec": inputs.get("spec", ""),
        "wall_time_s": None if wall_time_s is None else round(wall_time_s, 1),
        "notebook_parameters": {nb: redacted(p) for nb, p in inputs.get("notebook_parameters", {}).items()},
        "env": inputs["env"],
        "backend": inputs["backend"],
        "fan_out": inputs["fan_out"],
        "code_version": code_version,  # what every value's prepare step synced (None: not known)
        "status": "failed" if left or any(v["status"] == "failed" for v in values) else "success",
        "values": values,
        # what a manual run chose: its values (None: all) and the parameters it overrode
        "chosen_values": (conf or {}).get(VALUES_PARAM) if VALUES_PARAM in inputs.get("form", {}) else None,
        "overrides": redacted(chosen),
        # instances whose delete did not succeed: `dag-factory gc` removes them (docs/operations.md)
        "left_instances": left,
        "total": {"instance_hours": total_hours, "cost_usd": _cost(total_hours, price)},
        "estimate": inputs["estimate"],
    }


def with_earlier(report: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """The report of a run written again (a repair, a cleared task) keeps what each earlier report said:
    its status and each value that failed then, with why, oldest first."""
    earlier = list(previous.get("earlier", [])) if previous else []
    if previous:
        failed = {
            v["value"] or v["group"]: v["failure"] for v in previous["values"] if v["status"] == "failed"
        }
        earlier.append({"status": previous["status"], "failed": failed})
    return {**report, "earlier": earlier}


def money(value: float | None) -> str:
    return "-" if value is None else f"${value:.2f}"


def _hours_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} h"


def _href(path: str) -> str:
    return path if "://" in path else "file://" + path


def _choices_html(report: dict[str, Any]) -> str:
    parts = []
    if report.get("chosen_values"):
        parts.append("values: " + ", ".join(report["chosen_values"]))
    parts += [f"{name} = {value!r}" for name, value in report.get("overrides", {}).items()]
    return f"<p>this run was triggered with {html.escape('; '.join(parts))}</p>" if parts else ""


def _list_html(title: str, items: list[str], tag: str, intro: str = "") -> str:
    """A section of the page: a heading and a list of already-escaped items; nothing when empty."""
    if not items:
        return ""
    rows = "".join(f"<li>{item}</li>" for item in items)
    return f"<h2>{title}</h2>{intro}<{tag}>{rows}</{tag}>\n"


def _earlier_html(earlier: list[dict[str, Any]]) -> str:
    e = html.escape
    items = [
        e(x["status"]) + "".join(f"; {e(str(value))}: {e(why)}" for value, why in x["failed"].items())
        for x in earlier
    ]
    return _list_html("Earlier reports of this run", items, "ol")


def _left_html(left: list[dict[str, Any]]) -> str:
    e = html.escape
    items = [f"{e(x['instance'])} ({e(x['group'])}): delete_instance {e(x['delete_instance'])}" for x in left]
    intro = "<p>their delete did not succeed; `dag-factory gc` removes them</p>"
    return _list_html("Instances that may be left", items, "ul", intro)


def _parameters_html(parameters: dict[str, Any]) -> str:
    return "<br>".join(
        f"{html.escape(name)} = {html.escape(repr(value))}" for name, value in parameters.items()
    )


def _notebook_parameters_html(report: dict[str, Any]) -> str:
    e = html.escape
    items = [f"{e(nb)}: {_parameters_html(p)}" for nb, p in report.get("notebook_parameters", {}).items()]
    intro = "<p>on top of each value's parameters</p>"
    return _list_html("Each notebook's own parameters", items, "ul", intro)


def _seconds_text(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f} s"


def _time_split_html(split: dict[str, float] | None) -> str:
    """Where a local run's wall time went (dag_factory.local.timing; none for a run in production)."""
    if not split:
        return ""
    rows = "".join(
        f"<tr><td>{TIME_SPLIT_LABELS[name]}</td><td>{split[name]:.2f} s</td></tr>" for name in TIME_SPLIT
    )
    return (
        "<h2>Where the wall time went</h2><p>dag-factory run, from its start to its end: "
        f"{split['total']:.2f} s; the tasks on the run's critical path</p>\n<table>{rows}</table>\n"
    )


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: one row per value, the totals beside the plan's estimate."""
    e = html.escape
    label = report["fan_out"] or "value"
    rows = []
    for v in report["values"]:
        tasks = "<br>".join(
            f"{e(t['task_id'])}: {e(t['state'])}"
            + (f" ({t['duration_s']:.1f} s)" if t["duration_s"] is not None else "")
            for t in v["tasks"]
        )
        delivered = "<br>".join(f"{e(k)}: {'-' if n is None else n}" for k, n in v["rows_delivered"].items())
        links = "<br>".join(f'<a href="{e(_href(n["html"]))}">{e(n["notebook"])}</a>' for n in v["notebooks"])
        rows.append(
            f'<tr class="{e(v["status"])}"><td class="value">{e(v["value"] or v["group"])}</td>'
            f"<td>{e(v['status'])}</td><td>{tasks}</td><td>{e(v['failure'])}</td><td>{delivered or '-'}</td>"
            f"<td>{links}</td><td>{_parameters_html(v.get('parameters', {}))}</td>"
            f"<td>{_hours_text(v['instance_hours'])}</td><td>{money(v['cost_usd'])}</td></tr>"
        )
    est, total = report["estimate"], report["total"]
    sections = (
        _notebook_parameters_html(report)
        + _left_html(report["left_instances"])
        + _earlier_html(report.get("earlier", []))
        + _time_split_html(report.get("time_split"))
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(report["dag_id"])} {e(report["run_id"])}</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;
padding:4px;vertical-align:top}} tr.failed td.value{{color:#b00}}</style></head>
<body><h1>{e(report["dag_id"])}: {e(report["status"])}</h1>
<p>run {e(report["run_id"])} for logical date {e(report.get("logical_date") or "unknown")}, spec
{e(report.get("spec") or "unknown")}, environment {e(report["env"])} ({e(report["backend"])}), code version
{e(report.get("code_version") or "unknown")}; wall time {_seconds_text(report.get("wall_time_s"))}</p>
{_choices_html(report)}
<table><thead><tr><th>{e(label)}</th><th>status</th><th>tasks</th><th>failure</th><th>rows delivered</th>
<th>rendered notebooks</th><th>injected parameters</th><th>instance-hours</th><th>cost</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
{sections}<h2>Totals</h2>
<table><tr><th></th><th>instance-hours</th><th>cost</th></tr>
<tr><td>actual</td><td>{_hours_text(total["instance_hours"])}</td><td>{money(total["cost_usd"])}</td></tr>
<tr><td>plan estimate (maximum: {est["instances"]} x {e(est["instance_type"])} for the whole timeout)</td>
<td>{_hours_text(est["instance_hours_max"])}</td><td>{money(est["cost_max_usd"])}</td></tr></table>
</body></html>
"""
