"""Platform settings owned by data engineers: one file, one entry per environment.

Paths on the instance (``ssh.workdir``, ``ssh.conda_activate``) reach shell lines: they must be absolute
and hold only letters, digits, ``/ . _ -`` (and, in the workdir, the ``{group}`` placeholder), so that a
typo cannot become a command; the planner quotes them all the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from dag_factory.spec.job import InstanceType
from dag_factory.spec.rules import Violation, raise_violations, rule_error
from dag_factory.spec.text import shown
from dag_factory.spec.types import Duration, Identifier, SchemaExtra, StrictModel

BucketName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]

GROUP_PLACEHOLDER = "{group}"  # in ssh.workdir: the task group (fan-out value, or "shared")
_PATH_CHARACTER = re.compile(r"[A-Za-z0-9_./-]")
HOME_ON_INSTANCE = "/home/ec2-user"  # the notebook user's home on a SageMaker notebook instance


def _instance_path(placeholder: bool) -> Callable[[str], str]:
    allowed = "letters, digits, '/', '.', '_', '-'" + (" and the {group} placeholder" if placeholder else "")

    def check(value: str) -> str:
        if value.startswith("~/"):
            raise rule_error(
                f"{shown(value)} is not an absolute path",
                f"write {HOME_ON_INSTANCE}{value[1:]}: the steps quote paths, where '~' is no home folder",
            )
        if not value.startswith("/"):
            raise rule_error(
                f"{shown(value)} is not an absolute path",
                f"write the whole path, e.g. {HOME_ON_INSTANCE}/{value.lstrip('~')}",
            )
        rest = value.replace(GROUP_PLACEHOLDER, "") if placeholder else value
        bad = next((c for c in rest if not _PATH_CHARACTER.fullmatch(c)), None)
        if bad is not None:
            what = "a space" if bad == " " else repr(bad)
            raise rule_error(
                f"{shown(value)} holds {what}, which no path on the instance needs",
                f"paths reach shell commands: use {allowed}",
            )
        return value

    return check


InstancePath = Annotated[
    str, AfterValidator(_instance_path(placeholder=False)), SchemaExtra.of(pattern=r"^/[A-Za-z0-9_./-]*$")
]
InstancePathWithGroup = Annotated[
    str,
    AfterValidator(_instance_path(placeholder=True)),
    SchemaExtra.of(pattern=r"^/(?:[A-Za-z0-9_./-]|\{group\})*$"),
]

_KMS_KEY = re.compile(
    r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key|alias)/[A-Za-z0-9/_-]+"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|alias/[A-Za-z0-9/_-]+"
)


def _check_kms_key(value: str) -> str:
    if not _KMS_KEY.fullmatch(value):
        raise rule_error(
            f"{shown(value)} is not a KMS key",
            "use a key ARN such as arn:aws:kms:<region>:<account>:key/<id>, a key id, or alias/<name>",
        )
    return value


KmsKey = Annotated[str, AfterValidator(_check_kms_key), SchemaExtra.of(pattern=f"^(?:{_KMS_KEY.pattern})$")]


class Buckets(StrictModel):
    code: BucketName = Field(description="deployed projects: s3://<code>/<project>/")
    data: BucketName
    intermediate: BucketName
    output: BucketName = Field(description="executed notebooks and outputs")


class Connections(StrictModel):
    aws: str = "aws_default"
    ssh: str = "ssh_default"
    snowflake: str = "snowflake_default"
    postgres: str = "postgres_default"


class ApiPool(StrictModel):
    name: Identifier = "sagemaker_api"
    slots: int = Field(4, ge=1, le=64, description="concurrent SageMaker API tasks")


class SshSettings(StrictModel):
    """What runs on the instance. Login user, port and key belong to the Airflow SSH connection."""

    conda_activate: InstancePath = Field(
        "/home/ec2-user/anaconda3/bin/activate", description="script sourced with the conda env name"
    )
    workdir: InstancePathWithGroup = Field(
        "/home/ec2-user/SageMaker/job",
        description="where the project is synced; {group} is replaced by the task group (fan-out value)",
    )
    host_keys: Literal["accept-new", "pinned", "off"] = Field(
        "accept-new",
        description="accept-new: trust the key a new instance shows first, then pin it for the run; "
        "pinned: the key the instance's lifecycle configuration published to "
        "s3://<code bucket>/_host_keys/<instance>.pub; off: no check",
    )


class InstanceSecurity(StrictModel):
    """How every notebook instance is locked down; sent with each CreateNotebookInstance, together with
    IMDSv2 only (MinimumInstanceMetadataServiceVersion 2), which is not a choice."""

    direct_internet_access: bool = Field(
        False,
        description="SageMaker's own route to the internet; false: the instance reaches only what its subnet "
        "routes to (a NAT gateway, VPC endpoints for S3 and the package index)",
    )
    root_access: bool = Field(
        False,
        description="sudo for the notebook user (the steps run as it); lifecycle configurations run as root "
        "either way",
    )
    kms_key_id: KmsKey | None = Field(
        None, description="KMS key that encrypts the instance's ML storage volume; none: an AWS managed key"
    )


class PostgresLocation(StrictModel):
    host: str = Field(min_length=1, description="the host the postgres connection points at")
    port: int = Field(5432, ge=1, le=65535)
    database: str = Field(min_length=1)
    default_schema: str = Field("public", min_length=1, description="for tables named without a schema")


class SnowflakeLocation(StrictModel):
    account: str = Field(min_length=1, description="account identifier, e.g. xy12345.eu-west-1")
    database: str = Field(min_length=1, description="for tables named without a database")
    default_schema: str = Field("PUBLIC", min_length=1, description="for tables named without a schema")


class Warehouses(StrictModel):
    """Where the connections point, as the deliveries' Airflow asset URIs name them (the plan is
    built without Airflow, so it cannot ask the connections). A target without one has no asset."""

    postgres: PostgresLocation | None = None
    snowflake: SnowflakeLocation | None = None


class Timeouts(StrictModel):
    """How long the platform lets each step of a group take (one number each; `dag-factory plan` shows
    them). Notebooks are the spec's (notebooks[].timeout, compute.timeout for the whole group)."""

    create: Duration = Field("30m", description="create or restart an instance until InService")
    prepare: Duration = Field("30m", description="sync the project, install papermill and requirements")
    deliver: Duration = Field("1h", description="load one value's outputs into one target")
    teardown: Duration = Field("30m", description="stop an instance, and delete it: each")


class _Environment(StrictModel):
    timeouts: Timeouts = Field(default_factory=Timeouts)
    buckets: Buckets
    connections: Connections = Field(default_factory=Connections)
    allowed_instance_types: list[InstanceType] = Field(
        default_factory=list, description="empty: any instance type"
    )
    instance_prices: dict[InstanceType, float] = Field(
        default_factory=dict, description="USD per instance-hour, for plan estimates"
    )
    warehouses: Warehouses = Field(default_factory=Warehouses)


AccountId = Annotated[str, Field(pattern=r"^\d{12}$")]
SecurityGroupId = Annotated[str, Field(pattern=r"^sg-[0-9a-z]+$")]
SubnetId = Annotated[str, Field(pattern=r"^subnet-[0-9a-z]+$")]


class AwsEnvironment(_Environment):
    """What both SageMaker backends share: the account, the role the compute runs as, the network and
    how the Airflow UI links to what a run wrote."""

    account_id: AccountId
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")]
    role_arn: Annotated[str, Field(pattern=r"^arn:aws:iam::\d{12}:role/[\w+=,.@/-]+$")]
    security_group_ids: list[SecurityGroupId] = Field(min_length=1)
    api_pool: ApiPool = Field(default_factory=ApiPool)
    poll_interval: Duration = Field("30s", description="how often a waiting task asks SageMaker again")
    airflow_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="this environment's Airflow api-server: `dag-factory gc` asks it which runs are live",
    )
    notebook_links: Literal["console", "presigned"] = Field(
        "console",
        description="how Airflow's extra links (executed notebook, source, run report) open an S3 object: "
        "the S3 console's page of it (needs console access), or a presigned URL, valid 7 days at most "
        "(and no longer than the worker's credentials that sign it; the run's note says until when)",
    )


class SageMakerEnvironment(AwsEnvironment):
    """Notebook instances, the steps over SSH."""

    backend: Literal["sagemaker"]
    subnet_id: SubnetId
    lifecycle_config: str | None = None
    instance_security: InstanceSecurity = Field(default_factory=InstanceSecurity)
    ssh: SshSettings = Field(default_factory=SshSettings)

    @model_validator(mode="after")
    def _pinned_keys_need_a_publisher(self) -> SageMakerEnvironment:
        if self.ssh.host_keys == "pinned" and not self.lifecycle_config:
            raise_violations(
                "SageMakerEnvironment",
                [
                    Violation(
                        ("ssh", "host_keys"),
                        "'pinned' needs a lifecycle_config that publishes each instance's host key",
                        "set lifecycle_config (docs/deploy.md has the script), or use accept-new",
                        "pinned",
                    )
                ],
            )
        return self


# an ECR image: <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>[:tag | @sha256:<digest>]
_IMAGE_URI = re.compile(
    r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/[a-z0-9]+(?:[._/-][a-z0-9]+)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})?"
)


def _check_image_uri(value: str) -> str:
    if not _IMAGE_URI.fullmatch(value):
        raise rule_error(
            f"{shown(value)} is not an ECR image",
            "use <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> (or @sha256:<digest>): "
            "an image with papermill's needs, docs/deploy.md",
        )
    return value


ImageUri = Annotated[
    str, AfterValidator(_check_image_uri), SchemaExtra.of(pattern=f"^(?:{_IMAGE_URI.pattern})$")
]


class ManagedSpot(StrictModel):
    """Run the jobs on spare capacity (up to 90% cheaper); SageMaker may interrupt and resume them."""

    max_wait: Duration = Field(
        description="how long a job may wait for spot capacity and run, together (MaxWaitTimeInSeconds): "
        "at least the spec's compute.timeout"
    )


class SageMakerJobEnvironment(AwsEnvironment):
    """Each group (fan-out value, or the run for `isolation: shared`) runs as one SageMaker Training Job:
    no instance to create, reach over SSH or delete; the waits are deferred to Airflow's triggerer."""

    backend: Literal["sagemaker-job"]
    image_uri: ImageUri = Field(
        description="the job's container image: bash, python with pip, and the AWS CLI (docs/deploy.md)"
    )
    subnet_ids: list[SubnetId] = Field(min_length=1, max_length=16)
    volume_kms_key_id: KmsKey | None = Field(
        None, description="KMS key that encrypts the job's storage volume; none: an AWS managed key"
    )
    output_kms_key_id: KmsKey | None = Field(
        None, description="KMS key for what SageMaker itself writes to the output bucket"
    )
    managed_spot: ManagedSpot | None = None
    workdir: InstancePath = Field(
        "/opt/ml/dag-factory", description="where the job's container syncs the project and runs the steps"
    )
    conda_activate: InstancePath = Field(
        "/opt/conda/bin/activate",
        description="the image's conda activate script, sourced with the spec's runtime.conda_env",
    )


class LocalEnvironment(_Environment):
    backend: Literal["local"]
    root: str = Field(".dag-factory", description="folder holding the local buckets, relative to this file")
    warehouse: str = Field(
        "warehouse.duckdb", description="DuckDB file under root; snowflake/postgres targets load here"
    )
    account_id: str = "000000000000"


Environment = Annotated[
    SageMakerEnvironment | SageMakerJobEnvironment | LocalEnvironment, Field(discriminator="backend")
]


class PlatformSettings(StrictModel):
    version: Literal[1]
    environments: dict[Identifier, Environment] = Field(min_length=1)
