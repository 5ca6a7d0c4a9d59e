"""Make moto's SageMaker notebook instances usable end to end: network, buckets, an ENI per instance
whose private IP is a loopback address where the real sshd (tests/servers/sshd.py) listens, and
server-side throttling on demand.

moto runs in this process (``ThreadedMotoServer``), so its model classes are patched in place: every
boto3 client that talks HTTP to it, Airflow's operators and hooks included, sees the patched behaviour.

- ``seed_network(ec2)``: VPC 127.0.0.0/16, one subnet (the whole /16), one security group.
- ``seed_buckets(s3, names)``.
- ``StrictNotebooks`` (tests/servers/sagemaker_rules.py): AWS's input rules (names, tags, instance types,
  volume sizes), state latencies (Pending, Stopping, Deleting take seconds), lifecycle-config failures,
  per-type quotas; ``SageMakerEnv.aws``.
- ``NotebookEniPatch``: ``CreateNotebookInstance`` with a ``SubnetId`` creates an EC2 ENI in that subnet
  (unknown subnet: ValidationException, as on AWS) with the next free address of the sshd's pool as its
  ``PrivateIpAddress``; ``DescribeNotebookInstance`` returns its ``NetworkInterfaceId``; the ENI is
  deleted when its instance is gone (after Deleting). Without a ``SubnetId`` there is no ENI (as on AWS, where
  the instance then lives in SageMaker's own VPC) unless ``eni_without_subnet=True``.
- ``inject_throttling(action, times)``: the next ``times`` SageMaker calls of ``action`` (e.g.
  ``CreateNotebookInstance``) answer HTTP 400 ``ThrottlingException``; fixture ``sagemaker_throttling``
  clears it after the test.
- fixture ``sagemaker_env``: all of it for one test (moto reset by ``aws_env``, login env of the sshd
  pointed at moto, ``AIRFLOW_CONN_SSH_DEFAULT`` set to the sshd).

Instance types are AWS's list (botocore's API model), not moto's shorter one: ml.m5d.large and
ml.g4dn.xlarge are accepted; ml.m5.large and ml.t3.small are not (ValidationException), as on AWS.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from tests.servers.sagemaker_rules import Latencies, StrictNotebooks

if TYPE_CHECKING:
    from tests.servers.moto import MotoServer
    from tests.servers.sshd import SshdServer

VPC_CIDR = "127.0.0.0/16"
SUBNET_CIDR = "127.0.0.0/16"
DEFAULT_BUCKETS = {
    "code": "automated-notebook-test",
    "data": "nb-data-test",
    "intermediate": "nb-intermediate-test",
    "output": "nb-output-test",
}
# moto accepts it (ml.m5.large it does not)
NOTEBOOK_INSTANCE_TYPE = "ml.t3.medium"
ROLE_ARN = "arn:aws:iam::123456789012:role/service-role/AmazonSageMaker-ExecutionRole-test"


# --- seeding -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnet_id: str
    security_group_id: str


def seed_network(ec2_client: Any) -> Network:
    """A VPC 127.0.0.0/16 with one subnet over all of it and one security group."""
    vpc_id = ec2_client.create_vpc(CidrBlock=VPC_CIDR)["Vpc"]["VpcId"]
    region = ec2_client.meta.region_name
    subnet_id = ec2_client.create_subnet(VpcId=vpc_id, CidrBlock=SUBNET_CIDR, AvailabilityZone=f"{region}a")[
        "Subnet"
    ]["SubnetId"]
    sg_id = ec2_client.create_security_group(
        GroupName="notebook-instances", Description="notebook instances (test)", VpcId=vpc_id
    )["GroupId"]
    return Network(vpc_id=vpc_id, subnet_id=subnet_id, security_group_id=sg_id)


def seed_buckets(s3_client: Any, names: Iterable[str]) -> list[str]:
    region = s3_client.meta.region_name
    created = []
    for name in names:
        if region == "us-east-1":
            s3_client.create_bucket(Bucket=name)
        else:
            s3_client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
        created.append(name)
    return created


# --- the ENI patch -----------------------------------------------------------------------------------
@dataclass
class NotebookEniPatch:
    """Gives every new moto notebook instance an ENI whose private IP is one of ``addresses``."""

    addresses: Sequence[str]
    eni_without_subnet: bool = False
    default_subnet_id: str | None = None
    assigned: dict[str, str] = field(default_factory=dict)  # notebook instance name -> IP
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _round_robin: Iterator[str] | None = field(default=None, repr=False)

    def ip_of(self, notebook_instance_name: str) -> str:
        return self.assigned[notebook_instance_name]

    def _allocate(self, name: str) -> str:
        with self._lock:
            in_use = set(self.assigned.values())
            free = [a for a in self.addresses if a not in in_use]
            if free:
                ip = free[0]
            else:  # more live instances than addresses: share them
                if self._round_robin is None:
                    self._round_robin = itertools.cycle(self.addresses)
                ip = next(self._round_robin)
            self.assigned[name] = ip
            return ip

    def _release(self, name: str) -> None:
        with self._lock:
            self.assigned.pop(name, None)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> NotebookEniPatch:
        """Patch create and describe; the ENI goes when the instance is gone (``forget``)."""
        from moto.ec2.models import ec2_backends
        from moto.sagemaker.exceptions import ValidationError
        from moto.sagemaker.models import FakeSagemakerNotebookInstance, SageMakerModelBackend

        patch = self
        original_create = SageMakerModelBackend.create_notebook_instance
        original_to_dict = FakeSagemakerNotebookInstance.to_dict

        def create_notebook_instance(backend: Any, *args: Any, **kwargs: Any) -> Any:
            ec2 = ec2_backends[backend.account_id][backend.region_name]
            subnet_id = kwargs.get("subnet_id") or (
                patch.default_subnet_id if patch.eni_without_subnet else None
            )
            subnet = None
            if subnet_id:
                try:
                    subnet = ec2.get_subnet(subnet_id)
                except Exception as exc:  # moto's InvalidSubnetIdError
                    raise ValidationError(message=f"The subnet ID '{subnet_id}' does not exist") from exc
            notebook = original_create(backend, *args, **kwargs)
            if subnet is not None:
                name = notebook.notebook_instance_name
                eni = ec2.create_network_interface(
                    subnet=subnet,
                    private_ip_address=patch._allocate(name),
                    group_ids=kwargs.get("security_group_ids") or None,
                    description=f"[DO NOT DELETE] ENI managed by SageMaker for Notebook Instance {name}",
                )
                notebook.network_interface_id = eni.id
            return notebook

        def to_dict(notebook: Any) -> dict[str, Any]:
            answer: dict[str, Any] = original_to_dict(notebook)
            eni_id = getattr(notebook, "network_interface_id", None)
            if eni_id:
                answer["NetworkInterfaceId"] = eni_id
            return answer

        monkeypatch.setattr(SageMakerModelBackend, "create_notebook_instance", create_notebook_instance)
        monkeypatch.setattr(FakeSagemakerNotebookInstance, "to_dict", to_dict)
        return self

    def forget(self, backend: Any, notebook: Any) -> None:
        """A deleted instance's ENI and address go with it (StrictNotebooks.on_gone)."""
        from moto.ec2.models import ec2_backends

        eni_id = getattr(notebook, "network_interface_id", None)
        if eni_id:
            ec2_backends[backend.account_id][backend.region_name].delete_network_interface(eni_id)
        self._release(notebook.notebook_instance_name)


# --- throttling --------------------------------------------------------------------------------------
THROTTLE_BODY = {"__type": "ThrottlingException", "message": "Rate exceeded"}


class _Throttle:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self.original: Any = None

    def take(self, action: str) -> bool:
        with self.lock:
            if self.pending[action] > 0:
                self.pending[action] -= 1
                self.served[action] += 1
                return True
            return False


_THROTTLE = _Throttle()


def _install_throttle_hook() -> None:
    from moto.sagemaker.responses import SageMakerResponse

    if _THROTTLE.original is not None:
        return
    original = SageMakerResponse.call_action

    def call_action(self: Any) -> Any:
        if _THROTTLE.take(self._get_action()):
            headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": str(uuid.uuid4())}
            return 400, headers, json.dumps(THROTTLE_BODY)
        return original(self)

    _THROTTLE.original = original
    SageMakerResponse.call_action = call_action  # type: ignore[method-assign]


def inject_throttling(action: str, times: int) -> None:
    """The next ``times`` SageMaker ``action`` calls (e.g. "DescribeNotebookInstance") get HTTP 400
    ThrottlingException, whoever makes them. Undo with ``clear_throttling()`` (or the fixture)."""
    with _THROTTLE.lock:
        _install_throttle_hook()
        _THROTTLE.pending[action] += times


def throttled_count(action: str) -> int:
    """How many throttling answers ``action`` got since the last ``clear_throttling()``."""
    return _THROTTLE.served[action]


def clear_throttling() -> None:
    from moto.sagemaker.responses import SageMakerResponse

    with _THROTTLE.lock:
        _THROTTLE.pending.clear()
        _THROTTLE.served.clear()
        if _THROTTLE.original is not None:
            SageMakerResponse.call_action = _THROTTLE.original  # type: ignore[method-assign]
            _THROTTLE.original = None


@dataclass(frozen=True)
class Throttling:
    def inject(self, action: str, times: int) -> None:
        inject_throttling(action, times)

    def served(self, action: str) -> int:
        return throttled_count(action)

    def pending(self, action: str) -> int:
        return _THROTTLE.pending[action]


@pytest.fixture
def sagemaker_throttling(moto_server: MotoServer) -> Iterator[Throttling]:
    """``inject(action, times)`` / ``served(action)``; all throttling is cleared after the test."""
    clear_throttling()
    try:
        yield Throttling()
    finally:
        clear_throttling()


# --- the fixture -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SageMakerEnv:
    vpc_id: str
    subnet_id: str
    security_group_id: str
    buckets: dict[str, str]  # role (code/data/intermediate/output) -> bucket name
    ip: str  # the first address an instance gets (sshd listens there)
    addresses: tuple[str, ...]  # every address instances can get, in order of allocation
    endpoint_url: str
    eni: NotebookEniPatch
    aws: StrictNotebooks  # AWS's rules, latencies, quotas (tests/servers/sagemaker_rules.py)
    sshd: SshdServer
    moto: MotoServer

    @property
    def security_group_ids(self) -> list[str]:
        return [self.security_group_id]

    def create_instance_kwargs(self) -> dict[str, Any]:
        """What goes in SageMakerCreateNotebookOperator(create_instance_kwargs=...)."""
        return {"SubnetId": self.subnet_id, "SecurityGroupIds": self.security_group_ids}


def login_aws_env(endpoint_url: str, region: str = "eu-west-1") -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


@pytest.fixture
def sagemaker_env(
    request: pytest.FixtureRequest,
    aws_env: MotoServer,
    sshd_server: SshdServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[SageMakerEnv]:
    """Clean moto + network + buckets + the ENI patch + sshd logins pointed at moto, and Airflow's
    ``aws_default`` (via ``aws_env``) and ``ssh_default`` connections pointed at moto and the sshd.

    Bucket names: defaults ``DEFAULT_BUCKETS``; override per test with
    ``@pytest.mark.parametrize("sagemaker_env", [{"output": "other"}], indirect=True)``.
    """
    buckets = {**DEFAULT_BUCKETS, **(getattr(request, "param", None) or {})}
    env = prepare_sagemaker(aws_env, sshd_server, monkeypatch, buckets)
    monkeypatch.setenv("AIRFLOW_CONN_SSH_DEFAULT", sshd_server.airflow_conn_json())
    try:
        yield env
    finally:
        sshd_server.clear_login_env()


def prepare_sagemaker(
    moto: MotoServer, sshd: SshdServer, monkeypatch: pytest.MonkeyPatch, buckets: dict[str, str]
) -> SageMakerEnv:
    """Network, buckets, AWS's rules (``StrictNotebooks``), the ENI patch and sshd logins pointed at moto
    (undo: ``monkeypatch.undo()``, ``sshd.clear_login_env()``); also for the benchmarks, with a
    ``pytest.MonkeyPatch()`` of their own."""
    network = seed_network(moto.client("ec2"))
    seed_buckets(moto.client("s3"), buckets.values())
    pool = tuple(a for a in sshd.addresses if a != sshd.host) or (sshd.host,)
    # the rules first: the ENI patch wraps the strict create, and an ENI goes when its instance is gone
    eni = NotebookEniPatch(addresses=pool, default_subnet_id=network.subnet_id)
    strict = StrictNotebooks(on_gone=eni.forget).install(monkeypatch)
    eni.install(monkeypatch)
    sshd.set_login_env(login_aws_env(moto.endpoint_url))
    return SageMakerEnv(
        vpc_id=network.vpc_id, subnet_id=network.subnet_id, security_group_id=network.security_group_id,
        buckets=buckets, ip=pool[0], addresses=pool, endpoint_url=moto.endpoint_url, eni=eni,
        aws=strict, sshd=sshd, moto=moto,
    )  # fmt: skip


@pytest.fixture
def strict_aws(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> StrictNotebooks:
    """Clean moto with AWS's rules and (short, 0.5 s) state latencies, without network or sshd."""
    return StrictNotebooks(latencies=Latencies(0.5, 0.5, 0.5)).install(monkeypatch)


def wait_for_status(client: Any, name: str, status: str, timeout: float = 30) -> list[str]:
    """Poll DescribeNotebookInstance until ``status`` ("Deleted": gone); the statuses seen on the way."""
    import time

    from botocore.exceptions import ClientError

    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            now = client.describe_notebook_instance(NotebookInstanceName=name)["NotebookInstanceStatus"]
        except ClientError as exc:
            if "RecordNotFound" not in str(exc):
                raise
            now = "Deleted"
        if not seen or seen[-1] != now:
            seen.append(now)
        if now == status:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} not {status} after {timeout}s (seen {seen})")
        time.sleep(0.1)
