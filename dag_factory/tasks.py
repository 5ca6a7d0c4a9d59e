"""Callables that PythonOperators run on a worker: importable functions, plain arguments.

No closures: any executor (Celery, Kubernetes) imports them by name.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from dag_factory.naming import instance_name

log = logging.getLogger("dag_factory.tasks")

ADAPTIVE_RETRIES = {"retries": {"mode": "adaptive", "max_attempts": 10}}


def resolve_private_ip(dag_id: str, run_id: str, group: str, aws_conn_id: str) -> str:
    """Notebook instance -> its network interface -> private IP (returned into XCom)."""
    from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
    from botocore.config import Config

    name = instance_name(dag_id, run_id, group)
    config = Config(**ADAPTIVE_RETRIES)
    sagemaker = SageMakerHook(aws_conn_id=aws_conn_id, config=config).conn  # type: ignore[no-untyped-call]
    described = sagemaker.describe_notebook_instance(NotebookInstanceName=name)
    eni = described.get("NetworkInterfaceId")
    if not eni:
        status = described.get("NotebookInstanceStatus")
        raise RuntimeError(f"notebook instance {name} has no network interface (status {status})")
    ec2 = EC2Hook(aws_conn_id=aws_conn_id, api_type="client_type", config=config).conn
    interfaces = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"]
    if not interfaces or not interfaces[0].get("PrivateIpAddress"):
        raise RuntimeError(f"network interface {eni} of {name} has no private ip")
    ip = str(interfaces[0]["PrivateIpAddress"])
    log.info("notebook instance %s: interface %s, private ip %s", name, eni, ip)
    return ip


def create_workspace(workdir: str, python: str) -> str:
    """Local backend's 'instance': a fresh work directory with its own virtualenv."""
    path = Path(workdir)
    if path.exists():  # a retry: start clean, like a new instance
        shutil.rmtree(path)
    path.mkdir(parents=True)
    uv = shutil.which("uv")
    if uv:
        subprocess.run([uv, "venv", "--quiet", "--seed", "-p", python, str(path / "venv")], check=True)
    else:
        subprocess.run([python, "-m", "venv", str(path / "venv")], check=True)
    log.info("created workspace %s", path)
    return str(path)


def resolve_local_ip() -> str:
    return "127.0.0.1"


KEEP_ENV_VAR = "DAG_FACTORY_KEEP_WORKDIRS"


def remove_workspace(workdir: str) -> None:
    """Local backend's 'delete instance': remove the work directory (unless kept for debugging)."""
    path = Path(workdir)
    if os.environ.get(KEEP_ENV_VAR) == "1":
        log.info("keeping workspace %s (--keep)", path)
        return
    shutil.rmtree(path, ignore_errors=True)
    for parent in (path.parent, path.parent.parent):  # the run's folder, once empty
        try:
            parent.rmdir()
        except OSError:
            break
    log.info("removed workspace %s", path)


def deliver_outputs(
    target: dict[str, Any],
    source_prefix: str,
    logical_date: str,
    partition_column: str | None,
    partition_value: str | None,
    connections: dict[str, str],
) -> int:
    """Load one value's output files into one target; the row count goes to the log and XCom."""
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
    )
    log.info(
        "delivered %d rows to %s %s", rows, target.get("to"), target.get("table") or target.get("prefix")
    )
    return rows
