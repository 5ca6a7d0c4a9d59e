"""Importable callables for the benchmark DAGs (hand-written and dag-factory variants).

DAG files reference these by import path, never as lambdas or closures, so the DAGs serialize and any
executor can run them. Module import must stay cheap: heavy imports live inside the functions.
"""

from __future__ import annotations

from typing import Any


def resolve_instance_ip(instance_name: str, aws_conn_id: str = "aws_default", **_: Any) -> str:
    """Private IP of a SageMaker notebook instance: NetworkInterfaceId -> EC2 ENI -> PrivateIpAddress."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    sagemaker = AwsBaseHook(aws_conn_id=aws_conn_id, client_type="sagemaker").get_conn()
    eni_id = sagemaker.describe_notebook_instance(NotebookInstanceName=instance_name)["NetworkInterfaceId"]
    ec2 = AwsBaseHook(aws_conn_id=aws_conn_id, client_type="ec2").get_conn()
    enis = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"]
    return str(enis[0]["PrivateIpAddress"])


def deliver(target: str, table: str, files: str, prefix: str, conn_id: str, **options: Any) -> dict[str, Any]:
    """Stand-in for the delivery step (load the notebook outputs into the warehouse)."""
    return {"target": target, "table": table, "files": files, "prefix": prefix, "conn_id": conn_id, **options}
