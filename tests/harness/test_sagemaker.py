"""moto seeding, the notebook-instance ENI patch and server-side throttling."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.servers.sagemaker import (
    DEFAULT_BUCKETS,
    NOTEBOOK_INSTANCE_TYPE,
    ROLE_ARN,
    SageMakerEnv,
    Throttling,
)

pytestmark = pytest.mark.integration


def create_instance(sm: Any, env: SageMakerEnv, name: str, **kwargs: Any) -> None:
    sm.create_notebook_instance(
        NotebookInstanceName=name, InstanceType=NOTEBOOK_INSTANCE_TYPE, RoleArn=ROLE_ARN, **kwargs
    )


def private_ip(env: SageMakerEnv, name: str, sm: Any = None) -> str:
    sm = sm or env.moto.client("sagemaker")
    eni_id = sm.describe_notebook_instance(NotebookInstanceName=name)["NetworkInterfaceId"]
    ec2 = env.moto.client("ec2")
    (eni,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"]
    assert eni["SubnetId"] == env.subnet_id
    return str(eni["PrivateIpAddress"])


def test_seeding_creates_the_network_and_buckets(sagemaker_env: SageMakerEnv) -> None:
    ec2 = sagemaker_env.moto.client("ec2")
    (vpc,) = ec2.describe_vpcs(VpcIds=[sagemaker_env.vpc_id])["Vpcs"]
    assert vpc["CidrBlock"] == "127.0.0.0/16"
    (subnet,) = ec2.describe_subnets(SubnetIds=[sagemaker_env.subnet_id])["Subnets"]
    assert subnet["VpcId"] == sagemaker_env.vpc_id
    (group,) = ec2.describe_security_groups(GroupIds=[sagemaker_env.security_group_id])["SecurityGroups"]
    assert group["VpcId"] == sagemaker_env.vpc_id
    names = {b["Name"] for b in sagemaker_env.moto.client("s3").list_buckets()["Buckets"]}
    assert names == set(DEFAULT_BUCKETS.values())


@pytest.mark.parametrize("sagemaker_env", [{"output": "nb-output-other"}], indirect=True)
def test_bucket_names_can_be_overridden(sagemaker_env: SageMakerEnv) -> None:
    names = {b["Name"] for b in sagemaker_env.moto.client("s3").list_buckets()["Buckets"]}
    assert "nb-output-other" in names
    assert "nb-output-test" not in names


def test_each_instance_gets_an_eni_on_an_sshd_address(sagemaker_env: SageMakerEnv) -> None:
    sm = sagemaker_env.moto.client("sagemaker")
    kwargs = sagemaker_env.create_instance_kwargs()
    create_instance(sm, sagemaker_env, "nb-de", **kwargs)
    create_instance(sm, sagemaker_env, "nb-fr", **kwargs)
    ip_de, ip_fr = private_ip(sagemaker_env, "nb-de"), private_ip(sagemaker_env, "nb-fr")
    assert (ip_de, ip_fr) == sagemaker_env.addresses[:2]
    assert ip_de == sagemaker_env.ip == sagemaker_env.eni.ip_of("nb-de")
    # the address is where the real sshd answers
    result = sagemaker_env.sshd.run("echo $SSH_CONNECTION", host=ip_fr)
    assert result.stdout.split()[2] == ip_fr

    # delete (after stop, as on AWS) frees the ENI and the address
    eni_de = sm.describe_notebook_instance(NotebookInstanceName="nb-de")["NetworkInterfaceId"]
    with pytest.raises(ClientError, match="Unable to transition to \\(Deleting\\)"):
        sm.delete_notebook_instance(NotebookInstanceName="nb-de")
    sm.stop_notebook_instance(NotebookInstanceName="nb-de")
    sm.delete_notebook_instance(NotebookInstanceName="nb-de")
    enis = sagemaker_env.moto.client("ec2").describe_network_interfaces()["NetworkInterfaces"]
    assert eni_de not in {e["NetworkInterfaceId"] for e in enis}
    create_instance(sm, sagemaker_env, "nb-nl", **kwargs)
    assert private_ip(sagemaker_env, "nb-nl") == ip_de


def test_no_subnet_means_no_eni_and_an_unknown_subnet_is_rejected(sagemaker_env: SageMakerEnv) -> None:
    sm = sagemaker_env.moto.client("sagemaker")
    create_instance(sm, sagemaker_env, "nb-no-vpc")
    assert "NetworkInterfaceId" not in sm.describe_notebook_instance(NotebookInstanceName="nb-no-vpc")
    with pytest.raises(ClientError, match=r"subnet ID 'subnet-00000000' does not exist"):
        create_instance(sm, sagemaker_env, "nb-bad-subnet", SubnetId="subnet-00000000")


def test_moto_accepts_only_some_instance_types(sagemaker_env: SageMakerEnv) -> None:
    sm = sagemaker_env.moto.client("sagemaker")
    with pytest.raises(ClientError, match="instanceType"):
        sm.create_notebook_instance(
            NotebookInstanceName="nb-m5", InstanceType="ml.m5.large", RoleArn=ROLE_ARN
        )
    sm.create_notebook_instance(NotebookInstanceName="nb-m5x", InstanceType="ml.m5.xlarge", RoleArn=ROLE_ARN)


def test_airflow_operator_and_hook_see_the_eni(sagemaker_env: SageMakerEnv) -> None:
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerCreateNotebookOperator

    operator = SageMakerCreateNotebookOperator(
        task_id="create",
        instance_name="nb-airflow",
        instance_type=NOTEBOOK_INSTANCE_TYPE,
        role_arn=ROLE_ARN,
        create_instance_kwargs=sagemaker_env.create_instance_kwargs(),
        aws_conn_id="aws_default",
    )
    arn = operator.execute(context={})  # type: ignore[arg-type]
    assert arn.endswith("notebook-instance/nb-airflow")
    hook = SageMakerHook(aws_conn_id="aws_default")
    described = hook.conn.describe_notebook_instance(NotebookInstanceName="nb-airflow")
    assert described["NotebookInstanceStatus"] == "InService"
    assert private_ip(sagemaker_env, "nb-airflow", sm=hook.conn) == sagemaker_env.ip

    # and the IP is where ssh_default (set by the fixture) logs in, with the moto endpoint in its env
    from airflow.providers.ssh.hooks.ssh import SSHHook

    ssh = SSHHook(ssh_conn_id="ssh_default", remote_host=sagemaker_env.ip, cmd_timeout=60)
    with ssh.get_conn() as client:
        status, out, err = ssh.exec_ssh_client_command(
            client, "echo $SSH_CONNECTION && aws s3 ls", get_pty=False, environment=None
        )
    assert status == 0, err
    lines = out.decode().splitlines()
    assert lines[0].split()[2] == sagemaker_env.ip
    assert sorted(line.split()[-1] for line in lines[1:]) == sorted(sagemaker_env.buckets.values())


def throttle_client(sagemaker_env: SageMakerEnv, max_attempts: int) -> Any:
    return boto3.client(
        "sagemaker",
        endpoint_url=sagemaker_env.endpoint_url,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "adaptive", "max_attempts": max_attempts}),
    )


def test_throttling_is_retried_by_an_adaptive_client(
    sagemaker_env: SageMakerEnv, sagemaker_throttling: Throttling
) -> None:
    sm = throttle_client(sagemaker_env, max_attempts=5)
    sagemaker_throttling.inject("CreateNotebookInstance", 2)
    create_instance(sm, sagemaker_env, "nb-throttled", **sagemaker_env.create_instance_kwargs())
    assert sagemaker_throttling.served("CreateNotebookInstance") == 2
    assert sagemaker_throttling.pending("CreateNotebookInstance") == 0
    sagemaker_throttling.inject("DescribeNotebookInstance", 2)
    assert private_ip(sagemaker_env, "nb-throttled", sm=sm) == sagemaker_env.ip
    assert sagemaker_throttling.served("DescribeNotebookInstance") == 2


def test_throttling_fails_a_client_without_retries(
    sagemaker_env: SageMakerEnv, sagemaker_throttling: Throttling
) -> None:
    sm = throttle_client(sagemaker_env, max_attempts=1)
    sagemaker_throttling.inject("DescribeNotebookInstance", 2)
    with pytest.raises(ClientError) as error:
        sm.describe_notebook_instance(NotebookInstanceName="whatever")
    assert error.value.response["Error"] == {"Code": "ThrottlingException", "Message": "Rate exceeded"}
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # botocore's retries.max_attempts counts retries, not attempts (total_max_attempts counts both):
    # max_attempts=1 is one try + one retry, so both injected answers were used
    assert sagemaker_throttling.served("DescribeNotebookInstance") == 2
    assert sagemaker_throttling.pending("DescribeNotebookInstance") == 0
    # other actions are not affected
    assert sm.list_notebook_instances()["NotebookInstances"] == []
