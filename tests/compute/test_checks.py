"""The doctor's AWS checks (dag_factory.compute.checks) on answers AWS gives: which answer is a pass,
which a failure, and the exact line each prints. The clients are fakes that answer as botocore does
(a ClientError with AWS's code); the same checks against moto run in tests/ops/test_doctor.py."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from dag_factory.compute.checks import Check, check_buckets, check_calls, check_network, failed, passed
from dag_factory.spec.platform import SageMakerEnvironment

ENV = SageMakerEnvironment.model_validate(
    {
        "backend": "sagemaker",
        "account_id": "123456789012",
        "region": "eu-west-1",
        "role_arn": "arn:aws:iam::123456789012:role/runner",
        "subnet_id": "subnet-0abc",
        "security_group_ids": ["sg-0abc"],
        "buckets": {"code": "code-b", "data": "data-b", "intermediate": "inter-b", "output": "out-b"},
    }
)


def error(code: str, operation: str = "Call") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} message"}}, operation)


class Fake:
    """A client whose named methods raise the given error (or return the given answer)."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(**kwargs: Any) -> Any:
            self.calls.append(name)
            answer = self.answers.get(name, {})
            if isinstance(answer, Exception):
                raise answer
            return answer

        return call


def test_a_check_is_one_line_ok_or_fail_what_and_note() -> None:
    assert passed("pool sagemaker_api", "4 slots").line == "ok    pool sagemaker_api  (4 slots)"
    assert passed("plugin dag_factory registered").line == "ok    plugin dag_factory registered"
    assert failed("subnet subnet-1", "fix it").line == "FAIL  subnet subnet-1  (fix it)"
    assert Check.model_validate_json(failed("a", "b").model_dump_json()) == failed("a", "b")


def test_readable_buckets_are_read_and_a_written_one_gets_a_probe_written_read_and_deleted() -> None:
    s3 = Fake(get_object={"Body": _Body()})
    checks = check_buckets(lambda service: s3, ENV, writable=["data"])
    assert [c.line for c in checks] == [
        "ok    code bucket s3://code-b (read)",
        "ok    output bucket s3://out-b (read)",
        "ok    data bucket s3://data-b (read, write)",
    ]
    assert s3.calls[-5:] == ["head_bucket", "list_objects_v2", "put_object", "get_object", "delete_object"]


class _Body:
    def read(self) -> bytes:
        return b"probe"


@pytest.mark.parametrize(
    ("answers", "line"),
    [
        (
            {"head_bucket": error("404", "HeadBucket")},
            "FAIL  data bucket s3://data-b (read, write)  (no such bucket: create it, or fix buckets.data in "
            "the platform file)",
        ),
        (
            {"put_object": error("AccessDenied", "PutObject")},
            "FAIL  data bucket s3://data-b (read, write)  (s3:PutObject denied: allow it to the workers' "
            "role on data-b)",
        ),
        (
            {"head_bucket": EndpointConnectionError(endpoint_url="https://s3.eu-west-1.amazonaws.com")},
            "FAIL  data bucket s3://data-b (read, write)  (HeadBucket failed: EndpointConnectionError: Could "
            'not connect to the endpoint URL: "https://s3.eu-west-1.amazonaws.com")',
        ),
    ],
)
def test_a_bucket_that_is_missing_denied_or_unreachable_fails_saying_which(answers: Any, line: str) -> None:
    s3 = Fake(get_object={"Body": _Body()}, **answers)
    (data,) = check_buckets(lambda service: s3, ENV.model_copy(update={"buckets": _only_data()}), ["data"])[
        2:
    ]
    assert data.line == line


def _only_data() -> Any:
    return ENV.buckets.model_copy(update={"code": "data-b", "output": "data-b"})


def test_dry_run_operation_is_a_pass_and_unauthorized_a_failure() -> None:
    sagemaker = Fake(describe_notebook_instance=error("ValidationException"))
    allowed = Fake(describe_network_interfaces=error("DryRunOperation"))
    clients = {"ec2": allowed, "sagemaker": sagemaker}
    assert [c.line for c in check_calls(clients.__getitem__, ENV, "prod")] == [
        "ok    ec2:DescribeNetworkInterfaces allowed (dry run)",
        "ok    sagemaker:ListNotebookInstances allowed",
        "ok    sagemaker:DescribeNotebookInstance allowed",
    ]
    denied = {
        "ec2": Fake(describe_network_interfaces=error("UnauthorizedOperation")),
        "sagemaker": Fake(
            list_notebook_instances=error("AccessDeniedException"), describe_notebook_instance={}
        ),
    }
    assert [c.line for c in check_calls(denied.__getitem__, ENV, "prod")] == [
        "FAIL  ec2:DescribeNetworkInterfaces allowed (dry run)  (denied: allow ec2:DescribeNetworkInterfaces "
        "to the workers' role (docs/deploy.md, IAM))",
        "FAIL  sagemaker:ListNotebookInstances allowed  (denied: allow sagemaker:ListNotebookInstances to "
        "the workers' role (docs/deploy.md, IAM))",
        "ok    sagemaker:DescribeNotebookInstance allowed",
    ]


def test_the_describe_probe_names_an_instance_of_the_environment() -> None:
    sagemaker = Fake(describe_notebook_instance=error("ValidationException"))
    clients = {"ec2": Fake(describe_network_interfaces=error("DryRunOperation")), "sagemaker": sagemaker}
    check_calls(clients.__getitem__, ENV, "prod")
    assert sagemaker.calls == ["list_notebook_instances", "describe_notebook_instance"]


def test_network_subnet_missing_and_a_group_of_another_vpc() -> None:
    missing = Fake(
        describe_subnets=error("InvalidSubnetID.NotFound"),
        describe_security_groups={"SecurityGroups": [{"VpcId": "vpc-1"}]},
    )
    assert [c.line for c in check_network(lambda service: missing, ENV)] == [
        "FAIL  subnet subnet-0abc  (not found in eu-west-1: fix subnet_id in the platform file)",
        "ok    security group sg-0abc  (in vpc-1)",
    ]
    elsewhere = Fake(
        describe_subnets={"Subnets": [{"VpcId": "vpc-1"}]},
        describe_security_groups={"SecurityGroups": [{"VpcId": "vpc-2"}]},
    )
    assert [c.line for c in check_network(lambda service: elsewhere, ENV)] == [
        "ok    subnet subnet-0abc  (in vpc-1)",
        "FAIL  security group sg-0abc  (in vpc-2, the subnet in vpc-1: use a group of the subnet's VPC)",
    ]
    gone = Fake(
        describe_subnets={"Subnets": [{"VpcId": "vpc-1"}]},
        describe_security_groups=error("InvalidGroup.NotFound"),
    )
    assert check_network(lambda service: gone, ENV)[1].line == (
        "FAIL  security group sg-0abc  (not found in eu-west-1: fix security_group_ids in the platform file)"
    )
