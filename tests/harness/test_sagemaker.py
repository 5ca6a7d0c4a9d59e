"""moto seeding, the notebook-instance ENI patch, AWS's rules and latencies, server-side throttling."""

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
    wait_for_status,
)
from tests.servers.sagemaker_rules import Latencies, StrictNotebooks, lifecycle_config

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
    # Deleting long enough to look at the ENI in between on a loaded machine
    sagemaker_env.aws.latencies = Latencies(0.5, 0.5, 5.0)
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

    # delete (after stop, as on AWS) frees the ENI and the address once the instance is gone
    wait_for_status(sm, "nb-de", "InService")
    eni_de = sm.describe_notebook_instance(NotebookInstanceName="nb-de")["NetworkInterfaceId"]
    with pytest.raises(ClientError, match="Unable to transition to \\(Deleting\\)"):
        sm.delete_notebook_instance(NotebookInstanceName="nb-de")
    sm.stop_notebook_instance(NotebookInstanceName="nb-de")
    wait_for_status(sm, "nb-de", "Stopped")
    sm.delete_notebook_instance(NotebookInstanceName="nb-de")
    assert sagemaker_env.eni.ip_of("nb-de") == ip_de  # still Deleting: still there
    wait_for_status(sm, "nb-de", "Deleted")
    assert sagemaker_env.aws.statuses("nb-de") == ["Pending", "InService", "Stopping", "Stopped", "Deleting",
                                                  "Deleted"]  # fmt: skip
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


def test_instance_types_are_aws_s_not_moto_s(sagemaker_env: SageMakerEnv) -> None:
    sm = sagemaker_env.moto.client("sagemaker")
    with pytest.raises(
        ClientError, match=r"Value 'ml\.m5\.large' at 'instanceType' failed to satisfy constraint"
    ):
        sm.create_notebook_instance(
            NotebookInstanceName="nb-m5", InstanceType="ml.m5.large", RoleArn=ROLE_ARN
        )
    # AWS accepts these; moto alone does not
    for i, instance_type in enumerate(["ml.m5d.large", "ml.g4dn.xlarge", "ml.m5.xlarge"]):
        sm.create_notebook_instance(
            NotebookInstanceName=f"nb-ok-{i}", InstanceType=instance_type, RoleArn=ROLE_ARN
        )


def _create_error(sm: Any, **overrides: Any) -> str:
    kwargs = {"NotebookInstanceName": "nb-x", "InstanceType": NOTEBOOK_INSTANCE_TYPE, "RoleArn": ROLE_ARN}
    with pytest.raises(ClientError) as error:
        sm.create_notebook_instance(**{**kwargs, **overrides})
    assert error.value.response["Error"]["Code"] == "ValidationException"
    return str(error.value.response["Error"]["Message"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"NotebookInstanceName": "nb_underscore"}, "Value 'nb_underscore' at 'notebookInstanceName'"),
        ({"NotebookInstanceName": "-leading"}, "at 'notebookInstanceName' failed to satisfy constraint"),
        ({"NotebookInstanceName": "n" * 64}, "have length less than or equal to 63"),
        ({"VolumeSizeInGB": 4}, "Value '4' at 'volumeSizeInGB' failed to satisfy constraint"),
        ({"VolumeSizeInGB": 16385}, "Member must have value between 5 and 16384"),
        (
            {"Tags": [{"Key": "owner", "Value": "Data Science (EU)"}]},
            "Value 'Data Science (EU)' at 'tags.1.member.value'",
        ),
        ({"Tags": [{"Key": "run_id", "Value": "manual__a~b"}]}, "at 'tags.1.member.value' failed to satisfy"),
        ({"Tags": [{"Key": "x", "Value": "v" * 257}]}, "have length less than or equal to 256"),
        ({"Tags": [{"Key": "k" * 129, "Value": "v"}]}, "at 'tags.1.member.key' failed to satisfy constraint"),
        (
            {"Tags": [{"Key": "aws:owner", "Value": "v"}]},
            "Tag key 'aws:owner' uses the reserved prefix 'aws:'",
        ),
        ({"Tags": [{"Key": f"k{i}", "Value": "v"} for i in range(51)]}, "less than or equal to 50 (got 51)"),
        ({"Tags": [{"Key": "k", "Value": "a"}, {"Key": "k", "Value": "b"}]}, "Duplicate tag keys"),
        ({"LifecycleConfigName": "never-made"}, "Lifecycle Config 'never-made' does not exist"),
    ],
)
def test_names_tags_and_volumes_are_checked_as_aws_does(
    sagemaker_env: SageMakerEnv, overrides: dict[str, Any], message: str
) -> None:
    # botocore checks lengths and ranges (not patterns) itself: off, so that the server's checks answer
    sm = boto3.client(
        "sagemaker", endpoint_url=sagemaker_env.endpoint_url, region_name="eu-west-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(parameter_validation=False),
    )  # fmt: skip
    assert message in _create_error(sm, **overrides)
    assert sm.list_notebook_instances()["NotebookInstances"] == []
    assert [action for action, _, _ in sagemaker_env.aws.rejected] == ["CreateNotebookInstance"]


def test_valid_tags_pass_letters_of_any_script_included(sagemaker_env: SageMakerEnv) -> None:
    sm = sagemaker_env.moto.client("sagemaker")
    tags = [{"Key": "owner", "Value": "Équipe Données 2 @eu: a/b=c+d-e_f.g"}, {"Key": "empty", "Value": ""}]
    sm.create_notebook_instance(NotebookInstanceName="nb-tags", InstanceType=NOTEBOOK_INSTANCE_TYPE,
                                RoleArn=ROLE_ARN, Tags=tags)  # fmt: skip
    arn = sm.describe_notebook_instance(NotebookInstanceName="nb-tags")["NotebookInstanceArn"]
    assert sm.list_tags(ResourceArn=arn)["Tags"] == tags


def test_states_take_time_and_refuse_what_aws_refuses(sagemaker_env: SageMakerEnv) -> None:
    # Pending long enough for the calls below to meet it on a loaded machine
    sagemaker_env.aws.latencies = Latencies(pending_s=5.0, stopping_s=0.5, deleting_s=0.5)
    sm = sagemaker_env.moto.client("sagemaker")
    create_instance(sm, sagemaker_env, "nb-slow")
    assert (
        sm.describe_notebook_instance(NotebookInstanceName="nb-slow")["NotebookInstanceStatus"] == "Pending"
    )
    for call, message in [
        (sm.stop_notebook_instance, r"Status \(Pending\) not in \(\[InService\]\)"),
        (sm.delete_notebook_instance, r"Status \(Pending\) not in \(\[Stopped, Failed\]\)"),
        (sm.start_notebook_instance, r"Status \(Pending\) not in \(\[Stopped\]\)"),
    ]:
        with pytest.raises(ClientError, match=message):
            call(NotebookInstanceName="nb-slow")
    wait_for_status(sm, "nb-slow", "InService")
    sm.stop_notebook_instance(NotebookInstanceName="nb-slow")
    wait_for_status(sm, "nb-slow", "Stopped")
    sm.start_notebook_instance(NotebookInstanceName="nb-slow")  # a Stopped instance starts again
    wait_for_status(sm, "nb-slow", "InService")
    sm.stop_notebook_instance(NotebookInstanceName="nb-slow")
    wait_for_status(sm, "nb-slow", "Stopped")
    sm.delete_notebook_instance(NotebookInstanceName="nb-slow")
    with pytest.raises(ClientError, match=r"Status \(Deleting\) not in"):  # never deleted twice
        sm.delete_notebook_instance(NotebookInstanceName="nb-slow")
    wait_for_status(sm, "nb-slow", "Deleted")
    assert sagemaker_env.aws.statuses("nb-slow") == [
        "Pending", "InService", "Stopping", "Stopped", "Pending", "InService", "Stopping", "Stopped",
        "Deleting", "Deleted",
    ]  # fmt: skip


def test_a_failing_lifecycle_config_puts_the_instance_in_failed(sagemaker_env: SageMakerEnv) -> None:
    sagemaker_env.aws.latencies = Latencies(0.5, 0.5, 0.5)
    sm = sagemaker_env.moto.client("sagemaker")
    arn = lifecycle_config(sm, "on-start")
    sagemaker_env.aws.fail_lifecycle("on-start", times=1)
    create_instance(sm, sagemaker_env, "nb-lc-1", LifecycleConfigName="on-start")
    create_instance(sm, sagemaker_env, "nb-lc-2", LifecycleConfigName="on-start")
    wait_for_status(sm, "nb-lc-1", "Failed")
    assert sagemaker_env.aws.statuses("nb-lc-1") == ["Pending", "Failed"]  # the history, not a poll's luck
    described = sm.describe_notebook_instance(NotebookInstanceName="nb-lc-1")
    assert f"Notebook Instance Lifecycle Config '{arn}'" in described["FailureReason"]
    wait_for_status(sm, "nb-lc-2", "InService")
    assert sagemaker_env.aws.statuses("nb-lc-2") == ["Pending", "InService"]  # failed once only
    sm.delete_notebook_instance(NotebookInstanceName="nb-lc-1")  # a Failed instance can be deleted
    wait_for_status(sm, "nb-lc-1", "Deleted")


def test_a_per_type_quota_answers_resource_limit_exceeded(sagemaker_env: SageMakerEnv) -> None:
    sagemaker_env.aws.latencies = Latencies(0.5, 0.5, 0.5)
    sagemaker_env.aws.quotas = {NOTEBOOK_INSTANCE_TYPE: 1}
    sm = sagemaker_env.moto.client("sagemaker")
    create_instance(sm, sagemaker_env, "nb-q1")
    with pytest.raises(ClientError) as error:
        create_instance(sm, sagemaker_env, "nb-q2")
    assert error.value.response["Error"]["Code"] == "ResourceLimitExceeded"
    assert (
        f"The account-level service limit '{NOTEBOOK_INSTANCE_TYPE} for notebook instance usage' is 1 "
        "Instances, with current utilization of 1 Instances" in error.value.response["Error"]["Message"]
    )
    sm.create_notebook_instance(NotebookInstanceName="nb-other", InstanceType="ml.t3.large", RoleArn=ROLE_ARN)
    wait_for_status(sm, "nb-q1", "InService")
    sm.stop_notebook_instance(NotebookInstanceName="nb-q1")
    wait_for_status(sm, "nb-q1", "Stopped")  # a stopped instance does not count
    create_instance(sm, sagemaker_env, "nb-q2")
    with pytest.raises(ClientError, match="ResourceLimitExceeded"):
        sm.start_notebook_instance(NotebookInstanceName="nb-q1")


def test_auto_stop_stops_an_instance_that_reached_in_service(sagemaker_env: SageMakerEnv) -> None:
    sagemaker_env.aws.latencies = Latencies(0.5, 0.5, 0.5)
    sagemaker_env.aws.auto_stop(1)
    sm = sagemaker_env.moto.client("sagemaker")
    create_instance(sm, sagemaker_env, "nb-idle")
    wait_for_status(sm, "nb-idle", "Stopped")
    assert sagemaker_env.aws.statuses("nb-idle") == ["Pending", "InService", "Stopping", "Stopped"]


def test_strict_aws_without_network(strict_aws: StrictNotebooks) -> None:
    import boto3

    strict_aws.latencies = Latencies(5.0, 0.5, 0.5)  # the first describe meets Pending even under load
    sm = boto3.client("sagemaker")
    sm.create_notebook_instance(
        NotebookInstanceName="nb-plain", InstanceType="ml.t3.medium", RoleArn=ROLE_ARN
    )
    assert wait_for_status(sm, "nb-plain", "InService") == ["Pending", "InService"]
    assert strict_aws.statuses("nb-plain") == ["Pending", "InService"]
    assert ("nb-plain", "Pending") in strict_aws.described


def test_airflow_operator_and_hook_see_the_eni(sagemaker_env: SageMakerEnv) -> None:
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerCreateNotebookOperator

    sagemaker_env.aws.latencies = Latencies(0.5, 0.5, 0.5)
    operator = SageMakerCreateNotebookOperator(
        task_id="create",
        instance_name="nb-airflow",
        instance_type=NOTEBOOK_INSTANCE_TYPE,
        role_arn=ROLE_ARN,
        create_instance_kwargs=sagemaker_env.create_instance_kwargs(),
        aws_conn_id="aws_default",
        wait_for_completion=False,  # its waiter polls every 30 s
    )
    arn = operator.execute(context={})  # type: ignore[arg-type]
    assert arn.endswith("notebook-instance/nb-airflow")
    hook = SageMakerHook(aws_conn_id="aws_default")
    wait_for_status(hook.conn, "nb-airflow", "InService")
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
