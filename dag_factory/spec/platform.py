"""Platform settings owned by data engineers: one file, one entry per environment."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from dag_factory.spec.job import InstanceType
from dag_factory.spec.rules import Violation, raise_violations
from dag_factory.spec.types import Duration, Identifier, StrictModel

BucketName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]


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

    conda_activate: str = Field(
        "/home/ec2-user/anaconda3/bin/activate", description="script sourced with the conda env name"
    )
    workdir: str = Field(
        "/home/ec2-user/SageMaker/job",
        description="where the project is synced; {group} is replaced by the task group (fan-out value)",
    )
    host_keys: Literal["accept-new", "pinned", "off"] = Field(
        "accept-new",
        description="accept-new: trust the key a new instance shows first, then pin it for the run; "
        "pinned: the key the instance's lifecycle configuration published to "
        "s3://<code bucket>/_host_keys/<instance>.pub; off: no check",
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


class SageMakerEnvironment(_Environment):
    backend: Literal["sagemaker"]
    account_id: Annotated[str, Field(pattern=r"^\d{12}$")]
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")]
    role_arn: Annotated[str, Field(pattern=r"^arn:aws:iam::\d{12}:role/[\w+=,.@/-]+$")]
    subnet_id: Annotated[str, Field(pattern=r"^subnet-[0-9a-z]+$")]
    security_group_ids: list[Annotated[str, Field(pattern=r"^sg-[0-9a-z]+$")]] = Field(min_length=1)
    lifecycle_config: str | None = None
    api_pool: ApiPool = Field(default_factory=ApiPool)
    poll_interval: Duration = Field("30s", description="how often a waiting task asks SageMaker again")
    airflow_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="this environment's Airflow api-server: `dag-factory gc` asks it which runs are live",
    )
    ssh: SshSettings = Field(default_factory=SshSettings)
    notebook_links: Literal["console", "presigned"] = Field(
        "console",
        description="how Airflow's extra links (executed notebook, source, run report) open an S3 object: "
        "the S3 console's page of it (needs console access), or a presigned URL valid for 7 days",
    )

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


class LocalEnvironment(_Environment):
    backend: Literal["local"]
    root: str = Field(".dag-factory", description="folder holding the local buckets, relative to this file")
    warehouse: str = Field(
        "warehouse.duckdb", description="DuckDB file under root; snowflake/postgres targets load here"
    )
    account_id: str = "000000000000"


Environment = Annotated[SageMakerEnvironment | LocalEnvironment, Field(discriminator="backend")]


class PlatformSettings(StrictModel):
    version: Literal[1]
    environments: dict[Identifier, Environment] = Field(min_length=1)
