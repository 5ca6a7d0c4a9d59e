"""Callables that PythonOperators run on a worker: importable functions, plain arguments.

No closures: any executor (Celery, Kubernetes) imports them by name.
"""

from __future__ import annotations

import logging
from typing import Any

from dag_factory.compute import aws
from dag_factory.compute.naming import instance_name
from dag_factory.compute.sagemaker import private_ip, published_host_key
from dag_factory.compute.workspace import create_workspace, remove_workspace

log = logging.getLogger("dag_factory.airflow.tasks")

HOST_KEY_XCOM = "host_key"  # the instance's ssh host key, `<type> <base64>`

# the local backend's instance life cycle runs as tasks too
__all__ = [
    "create_workspace",
    "deliver_outputs",
    "remove_workspace",
    "resolve_local_ip",
    "resolve_private_ip",
]


def resolve_private_ip(
    dag_id: str,
    run_id: str,
    group: str,
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
    name = instance_name(dag_id, run_id, group)
    sagemaker = SageMakerHook(aws_conn_id=aws_conn_id, config=config).conn  # type: ignore[no-untyped-call]
    ec2 = EC2Hook(aws_conn_id=aws_conn_id, api_type="client_type", config=config).conn
    ip = private_ip(sagemaker, ec2, name)
    if host_key_bucket:
        host_key = published_host_key(S3Hook(aws_conn_id=aws_conn_id).get_conn(), host_key_bucket, name)
        log.info("notebook instance %s published ssh host key %s", name, host_key)
        ti.xcom_push(key=HOST_KEY_XCOM, value=host_key)
    return ip


def resolve_local_ip() -> str:
    return "127.0.0.1"


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
