"""What `dag-factory doctor` reports, and its checks of the AWS resources a SageMaker environment uses.

A Check is one line, `ok|FAIL  what  (note)`: the note of a failure says how to fix it, an ok's what was
found. The AWS checks are boto only: the caller hands in the clients (the doctor makes them from the
Airflow AWS connection, as the DAGs' tasks do), so they ask AWS with the worker's own credentials.
Where AWS has a dry run (EC2) it is used; a SageMaker call that cannot be dry-run is replaced by the
cheapest call of the same permission scope (docs/deploy.md lists what cannot be checked).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

from dag_factory.compute.aws import api_errors
from dag_factory.spec.platform import SageMakerEnvironment

Clients = Callable[[str], Any]  # service name -> a boto3 client of the environment's region
PROBE_PREFIX = "_dag-factory-doctor/"  # where the write check puts (and deletes) its probe object


class Check(BaseModel):
    """One line of the doctor's report."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    what: str
    note: str = ""  # a failure: how to fix it; ok: what was found

    @property
    def status(self) -> str:
        return "ok" if self.ok else "FAIL"

    @property
    def line(self) -> str:
        return f"{self.status:<4}  {self.what}" + (f"  ({self.note})" if self.note else "")


def probe_config() -> Any:
    """The clients' config: short timeouts and one retry, so that an unreachable endpoint is a failed
    check within seconds, not a minute of the tasks' adaptive retries."""
    from botocore.config import Config

    return Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=20)


def passed(what: str, note: str = "") -> Check:
    return Check(ok=True, what=what, note=note)


def failed(what: str, fix: str) -> Check:
    return Check(ok=False, what=what, note=fix)


def error_code(exc: Exception) -> str:
    """An AWS error answer's code ('404', 'AccessDenied', 'DryRunOperation'), or the exception's type
    when there was no answer (an endpoint that cannot be reached)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(exc).__name__))
    return type(exc).__name__


def _denied(code: str) -> bool:
    return code in ("403", "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden")


def check_buckets(clients: Clients, env: SageMakerEnvironment, writable: Iterable[str] = ()) -> list[Check]:
    """The code and output buckets (the workers read both: the code version a run syncs, the outputs
    they deliver), and each bucket role in ``writable`` (an s3 target's): written, read, deleted."""
    s3 = clients("s3")
    roles = ["code", "output", *(r for r in sorted(set(writable)) if r not in ("code", "output"))]
    return [_check_bucket(s3, role, getattr(env.buckets, role), role in writable) for role in roles]


def _check_bucket(s3: Any, role: str, bucket: str, write: bool) -> Check:
    access = "read, write" if write else "read"
    what = f"{role} bucket s3://{bucket} ({access})"
    step = "HeadBucket"
    try:
        s3.head_bucket(Bucket=bucket)
        step = "ListBucket"
        s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
        if write:
            key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
            step = "PutObject"
            s3.put_object(Bucket=bucket, Key=key, Body=b"dag-factory doctor probe")
            step = "GetObject"
            s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            step = "DeleteObject"
            s3.delete_object(Bucket=bucket, Key=key)
    except api_errors() as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket"):
            return failed(what, f"no such bucket: create it, or fix buckets.{role} in the platform file")
        if _denied(code):
            return failed(what, f"s3:{step} denied: allow it to the workers' role on {bucket}")
        return failed(what, f"{step} failed: {code}: {exc}")
    return passed(what)


def check_network(clients: Clients, env: SageMakerEnvironment) -> list[Check]:
    """The notebook instances' subnet and security groups exist, the groups in the subnet's VPC."""
    ec2 = clients("ec2")
    what = f"subnet {env.subnet_id}"
    try:
        subnets = ec2.describe_subnets(SubnetIds=[env.subnet_id])["Subnets"]
    except api_errors() as exc:
        subnets, code = [], error_code(exc)
        if code != "InvalidSubnetID.NotFound":
            return [failed(what, f"DescribeSubnets failed: {code}"), *_groups(ec2, env, None)]
    if not subnets:
        return [
            failed(what, f"not found in {env.region}: fix subnet_id in the platform file"),
            *_groups(ec2, env, None),
        ]
    vpc = str(subnets[0]["VpcId"])
    return [passed(what, f"in {vpc}"), *_groups(ec2, env, vpc)]


def _groups(ec2: Any, env: SageMakerEnvironment, vpc: str | None) -> list[Check]:
    checks = []
    for group in env.security_group_ids:
        what = f"security group {group}"
        try:
            found = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
        except api_errors() as exc:
            code = error_code(exc)
            fix = (
                f"not found in {env.region}: fix security_group_ids in the platform file"
                if code == "InvalidGroup.NotFound"
                else f"DescribeSecurityGroups failed: {code}"
            )
            checks.append(failed(what, fix))
            continue
        in_vpc = str(found[0]["VpcId"]) if found else None
        if vpc is not None and in_vpc != vpc:
            checks.append(failed(what, f"in {in_vpc}, the subnet in {vpc}: use a group of the subnet's VPC"))
        else:
            checks.append(passed(what, f"in {in_vpc}"))
    return checks


def check_calls(clients: Clients, env: SageMakerEnvironment, env_name: str) -> list[Check]:
    """The calls the DAGs and gc make that can be tried without effect: EC2's with DryRun, SageMaker's
    read calls (a describe of a name under the environment's own `nb-<env>-` prefix, which the
    worker role's resource pattern must cover; no instance of that name exists)."""
    ec2, sagemaker = clients("ec2"), clients("sagemaker")
    probe = f"nb-{env_name}-dag-factory-doctor"
    return [
        _dry_run("ec2:DescribeNetworkInterfaces", lambda: ec2.describe_network_interfaces(DryRun=True)),
        _allowed("sagemaker:ListNotebookInstances", lambda: sagemaker.list_notebook_instances(MaxResults=1)),
        _allowed(
            "sagemaker:DescribeNotebookInstance",
            lambda: sagemaker.describe_notebook_instance(NotebookInstanceName=probe),
            absent=("ValidationException", "ResourceNotFound"),
        ),
    ]


def _dry_run(action: str, call: Callable[[], Any]) -> Check:
    what = f"{action} allowed (dry run)"
    try:
        call()
    except api_errors() as exc:
        code = error_code(exc)
        if code == "DryRunOperation":
            return passed(what)
        if _denied(code):
            return failed(what, f"denied: allow {action} to the workers' role (docs/deploy.md, IAM)")
        return failed(what, f"{code}: {exc}")
    return failed(what, "the call ran instead of a dry run: check the endpoint the AWS connection uses")


def _allowed(action: str, call: Callable[[], Any], absent: tuple[str, ...] = ()) -> Check:
    what = f"{action} allowed"
    try:
        call()
    except api_errors() as exc:
        code = error_code(exc)
        if code in absent:  # asked about a name that does not exist: the call itself was allowed
            return passed(what)
        if _denied(code):
            return failed(what, f"denied: allow {action} to the workers' role (docs/deploy.md, IAM)")
        return failed(what, f"{code}: {exc}")
    return passed(what)
