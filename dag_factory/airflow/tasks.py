"""Callables that PythonOperators run on a worker: importable functions, plain arguments.

No closures: any executor (Celery, Kubernetes) imports them by name.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dag_factory.compute import aws
from dag_factory.compute.naming import instance_name
from dag_factory.compute.sagemaker import private_ip, published_host_key
from dag_factory.compute.workspace import create_workspace, remove_workspace
from dag_factory.plan.model import code_version_dir
from dag_factory.plan.report import (
    BILLABLE_XCOM,
    CREATED_XCOM,
    DELETED_XCOM,
    JOB_TASK,
    REPORT_HTML,
    REPORT_JSON,
    build_report,
    render_html,
    with_earlier,
)

log = logging.getLogger("dag_factory.airflow.tasks")

HOST_KEY_XCOM = "host_key"  # the instance's ssh host key, `<type> <base64>`

# the local backend's instance life cycle runs as tasks too
__all__ = [
    "create_local_instance",
    "deliver_outputs",
    "publish_delivery",
    "remove_local_instance",
    "resolve_local_ip",
    "resolve_private_ip",
]


def resolve_private_ip(
    dag_id: str,
    run_id: str,
    group: str,
    env: str,
    aws_conn_id: str,
    host_key_bucket: str | None = None,
    ti: Any = None,
) -> str:
    """Notebook instance -> its network interface -> private IP (returned into XCom). With
    ``host_key_bucket`` (ssh.host_keys: pinned) also the host key the instance published (XCom
    `host_key`), which every SSH task of the group then requires."""
    from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    config = aws.retry_config()
    name = instance_name(dag_id, run_id, group, env=env)
    sagemaker = SageMakerHook(aws_conn_id=aws_conn_id, config=config).conn  # type: ignore[no-untyped-call]
    ec2 = EC2Hook(aws_conn_id=aws_conn_id, api_type="client_type", config=config).conn
    ip = private_ip(sagemaker, ec2, name)
    if host_key_bucket:
        host_key = published_host_key(S3Hook(aws_conn_id=aws_conn_id).get_conn(), host_key_bucket, name)
        log.info("notebook instance %s published ssh host key %s", name, host_key)
        ti.xcom_push(key=HOST_KEY_XCOM, value=host_key)
    return ip


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def create_local_instance(
    workdir: str,
    python: str,
    env_cache: str | None = None,
    packages: Sequence[str] = (),
    code: str | None = None,
    requirements: str | None = None,
    ti: Any = None,
    dag_run: Any = None,
) -> str:
    """The local backend's instance (a work dir + venv); its creation time goes to XCom for the report.
    ``requirements`` is a path in the project: read in the code version the run syncs."""
    from dag_factory.airflow.params import code_version

    if code and requirements:
        version = code_version(code, "aws_default", None, dag_run)
        requirements = f"{code_version_dir(code, version)}/{requirements}"
    path = create_workspace(workdir, python, env_cache, packages, requirements)
    ti.xcom_push(key=CREATED_XCOM, value=now_iso())
    return path


def remove_local_instance(workdir: str, ti: Any = None) -> None:
    remove_workspace(workdir)
    ti.xcom_push(key=DELETED_XCOM, value=now_iso())


def resolve_local_ip() -> str:
    return "127.0.0.1"


def deliver_outputs(
    target: dict[str, Any],
    source_prefix: str,
    logical_date: str,
    partition_column: str | None,
    partition_value: str | None,
    connections: dict[str, str],
    ti: Any = None,
) -> int:
    """Load one value's output files into one target; the row count goes to the log and XCom. The
    run id keys the target's delivery ledger: a retry of an append that committed adds nothing."""
    import datetime as dt

    from dag_factory.deliver import deliver

    rows = deliver(
        target=target,
        source_prefix=source_prefix,
        logical_date=dt.date.fromisoformat(logical_date),
        partition_column=partition_column,
        partition_value=partition_value,
        postgres_conn_id=connections.get("postgres", "postgres_default"),
        snowflake_conn_id=connections.get("snowflake", "snowflake_default"),
        aws_conn_id=connections.get("aws", "aws_default"),
        run_id=ti.run_id if ti is not None else None,
        try_number=int(ti.try_number) if ti is not None else None,
    )
    log.info(
        "delivered %d rows to %s %s", rows, target.get("to"), target.get("table") or target.get("prefix")
    )
    return rows


def publish_delivery(
    asset: str,
    deliveries: dict[str, str | None],
    run_id: str,
    ti: Any = None,
    outlet_events: Any = None,
) -> int | None:
    """The run's one asset event for a delivery target, once every value's deliver task succeeded (the
    task's outlet). Its extra: each value's row count (from the deliver tasks' XComs), their total and
    the run id. No instance, no warehouse: XComs only. Returns the total (None when a count is missing,
    e.g. a deliver task marked success by hand)."""
    from airflow.sdk import Asset

    counts = {task_id: ti.xcom_pull(task_ids=task_id) for task_id in deliveries}
    missing = [task_id for task_id, rows in counts.items() if rows is None]
    if missing:
        log.warning("no row count from %s: the event's total is null", ", ".join(missing))
    values = {value: counts[task_id] for task_id, value in deliveries.items() if value is not None}
    total = None if missing else sum(int(rows) for rows in counts.values())
    outlet_events[Asset(asset)].extra = {"values": values, "rows": total, "run_id": run_id}
    log.info("asset event for %s: %s rows from %d deliveries", asset, total, len(deliveries))
    return total


def _s3_parts(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def _read_text(url: str, aws_conn_id: str) -> str | None:
    """A local file or an s3:// object as text; None when it is not there."""
    if url.startswith("s3://"):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        hook = S3Hook(aws_conn_id=aws_conn_id)
        bucket, key = _s3_parts(url)
        return hook.read_key(key, bucket) if hook.check_for_key(key, bucket) else None
    path = Path(url)
    return path.read_text() if path.is_file() else None


def _write_text(url: str, text: str, content_type: str, aws_conn_id: str) -> None:
    if url.startswith("s3://"):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        bucket, key = _s3_parts(url)
        client = S3Hook(aws_conn_id=aws_conn_id).get_conn()
        client.put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"), ContentType=content_type)
        return
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    Path(url).write_text(text)


def _synced_code_version(inputs: dict[str, Any], aws_conn_id: str, dag_run: Any) -> str | None:
    """The code version the run's prepare steps synced; None (and why, in the log) when unknown: the
    report is written whatever else failed."""
    from dag_factory.airflow.params import code_version

    if dag_run is None or not inputs.get("code"):
        return None
    try:
        return code_version(inputs["code"], aws_conn_id, inputs.get("region"), dag_run)
    except Exception as exc:  # no deploy before the run, the code bucket unreadable
        log.warning("the run report names no code version: %s", exc)
        return None


def write_run_report(
    inputs: dict[str, Any],
    run_id: str,
    aws_conn_id: str,
    job_date: str | None = None,
    ti: Any = None,
    dag_run: Any = None,
) -> str:
    """The last task of a run (trigger rule all_done): report.json and report.html in the run's folder.

    States and durations come from Airflow (the Execution API's task breadcrumbs: every finished task
    instance of the run), delivered rows and instance times from the tasks' XComs, the failing cell
    from the executed notebook. Returns the report's HTML path (XCom, and the task's extra link).
    """
    crumbs = ti.get_task_breadcrumbs(dag_id=inputs["dag_id"], run_id=run_id)
    tis = {str(c["task_id"]): {"state": c["state"], "duration": c["duration"]} for c in crumbs}
    xcoms: dict[str, dict[str, Any]] = {}
    notebooks: dict[str, dict[str, Any] | None] = {}
    for group in inputs["groups"]:
        gid = group["group_id"]
        xcoms[f"{gid}.create_instance"] = {
            CREATED_XCOM: ti.xcom_pull(f"{gid}.create_instance", key=CREATED_XCOM)
        }
        xcoms[f"{gid}.delete_instance"] = {
            DELETED_XCOM: ti.xcom_pull(f"{gid}.delete_instance", key=DELETED_XCOM)
        }
        if inputs.get("backend") == "sagemaker-job":
            xcoms[f"{gid}.{JOB_TASK}"] = {BILLABLE_XCOM: ti.xcom_pull(f"{gid}.{JOB_TASK}", key=BILLABLE_XCOM)}
        for task in group["tasks"]:
            if task["kind"] == "deliver":
                xcoms[task["task_id"]] = {"return_value": ti.xcom_pull(task["task_id"])}
            elif task["kind"] == "notebook" and tis.get(task["task_id"], {}).get("state") == "failed":
                text = _read_text(task["executed"], aws_conn_id)
                notebooks[task["task_id"]] = json.loads(text) if text else None
    instances = {
        g["group_id"]: instance_name(inputs["dag_id"], run_id, g["group_id"], env=inputs["env"])
        for g in inputs["groups"]
    }
    conf = dict(dag_run.conf or {}) if dag_run is not None else {}
    version = _synced_code_version(inputs, aws_conn_id, dag_run)
    from dag_factory.airflow.params import run_started

    wall = (dt.datetime.now(dt.UTC) - run_started(dag_run)).total_seconds() if dag_run is not None else None
    report = build_report(inputs, run_id, tis, xcoms, notebooks, instances, conf, version, job_date, wall)
    folder = inputs["folder"]
    previous = _read_text(f"{folder}/{REPORT_JSON}", aws_conn_id)  # a repaired run's earlier report
    report = with_earlier(report, json.loads(previous) if previous else None)
    _write_text(
        f"{folder}/{REPORT_JSON}", json.dumps(report, indent=2) + "\n", "application/json", aws_conn_id
    )
    _write_text(f"{folder}/{REPORT_HTML}", render_html(report), "text/html", aws_conn_id)
    total = report["total"]
    log.info(
        "run report %s/%s: %s, %s instance-hours",
        folder,
        REPORT_HTML,
        report["status"],
        total["instance_hours"],
    )
    return f"{folder}/{REPORT_HTML}"
