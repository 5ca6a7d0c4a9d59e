"""The job spec a data scientist writes next to their notebooks (no Airflow import here)."""

from __future__ import annotations

import datetime as dt
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import AfterValidator, Field, field_validator, model_validator

from dag_factory.spec.types import Duration, Identifier, Parameters, StrictModel

# Airflow 3's schedule presets (and null for manual-only DAGs).
SCHEDULE_PRESETS = (
    "@once",
    "@continuous",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@quarterly",
    "@yearly",
    "@annually",
)

# Parameters every notebook receives; a spec may not redefine them.
STANDARD_PARAMETERS = ("env", "aws_account_id", "logical_date", "run_id", "output_prefix")


def _check_schedule(value: str | None) -> str | None:
    if value is None or value in SCHEDULE_PRESETS:
        return value
    if value.startswith("@"):
        raise ValueError(f"unknown preset {value!r}; use one of {', '.join(SCHEDULE_PRESETS)}")
    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError(f"invalid cron expression {value!r}; use 5 fields, e.g. '0 4 * * MON'")
    return value


def _check_notebook_path(value: str) -> str:
    path = PurePosixPath(value)
    if "\\" in value or path.is_absolute() or value.startswith("~"):
        raise ValueError(f"notebook path {value!r} must be relative to the project folder")
    if ".." in path.parts:
        raise ValueError(f"notebook path {value!r} must stay inside the project folder (no '..')")
    if path.suffix != ".ipynb":
        raise ValueError(f"notebook path {value!r} must end in .ipynb")
    return value


def _check_relative_file(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"path {value!r} must be relative and stay inside the project folder")
    return value


Schedule = Annotated[str | None, AfterValidator(_check_schedule)]
ProjectName = Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")]
FanOutValue = Annotated[str, Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,30}[A-Za-z0-9])?$")]
NotebookPath = Annotated[str, AfterValidator(_check_notebook_path)]
RelativeFile = Annotated[str, Field(min_length=1), AfterValidator(_check_relative_file)]
InstanceType = Annotated[str, Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Glob = Annotated[str, Field(min_length=1), AfterValidator(_check_relative_file)]
TableName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}$")]


class Runtime(StrictModel):
    """Where and how the notebooks execute on the instance."""

    kernel: str = Field("python3", min_length=1, description="Jupyter kernel papermill starts")
    conda_env: str = Field("python3", pattern=r"^[A-Za-z0-9_.-]+$", description="conda env to activate")
    requirements: RelativeFile | None = Field("requirements.txt", description="pip requirements, or null")
    papermill_version: str = Field("2.7.0", pattern=r"^\d+(\.\d+){1,2}$")


class Compute(StrictModel):
    instance_type: InstanceType = Field(description="SageMaker instance type, allowed by the platform")
    volume_size_gb: int = Field(30, ge=5, le=16384)
    isolation: Literal["per_item", "shared"] = Field(
        "per_item", description="per_item: one instance per fan-out value; shared: one for all"
    )
    max_parallel: int = Field(10, ge=1, le=100, description="fan-out values running at once")
    timeout: Duration = Field("4h", description="upper bound for one value's whole run")


class FanOut(StrictModel):
    name: Identifier = Field(description="parameter name the value is passed under, e.g. country")
    values: list[FanOutValue] = Field(min_length=1, max_length=500)
    parameters: dict[str, Parameters] = Field(
        default_factory=dict, description="per-value parameter overrides"
    )

    @field_validator("name")
    @classmethod
    def _not_standard(cls, name: str) -> str:
        if name in STANDARD_PARAMETERS:
            raise ValueError(f"{name!r} is a standard parameter; choose another fan-out name")
        return name

    @field_validator("values")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        seen: set[str] = set()
        dupes = [v for v in values if v in seen or seen.add(v)]  # type: ignore[func-returns-value]
        if dupes:
            raise ValueError(f"duplicate values: {', '.join(sorted(set(dupes)))}")
        return values

    @model_validator(mode="after")
    def _known_values(self) -> FanOut:
        unknown = sorted(set(self.parameters) - set(self.values))
        if unknown:
            raise ValueError(f"parameters given for values not in values: {', '.join(unknown)}")
        return self


class Notebook(StrictModel):
    path: NotebookPath
    parameters: Parameters = Field(default_factory=dict)
    timeout: Duration | None = Field(None, description="defaults to compute.timeout")
    kernel: str | None = Field(None, min_length=1, description="defaults to runtime.kernel")

    @property
    def stem(self) -> str:
        return PurePosixPath(self.path).stem


class _Delivery(StrictModel):
    files: Glob = Field(description="glob under the value's output prefix, e.g. predictions/*.parquet")
    mode: Literal["replace_partition", "append"] = "replace_partition"
    allow_empty: bool = False

    @property
    def label(self) -> str:
        """`to:table` or `to:prefix`, as plans and reviews show a target."""
        return f"{getattr(self, 'to', '')}:{getattr(self, 'table', None) or getattr(self, 'prefix', '')}"


class SnowflakeDelivery(_Delivery):
    to: Literal["snowflake"]
    table: TableName
    stage: TableName = Field(description="external stage over the output bucket, e.g. ML.NOTEBOOK_OUTPUTS")


class PostgresDelivery(_Delivery):
    to: Literal["postgres"]
    table: TableName


class S3Delivery(_Delivery):
    to: Literal["s3"]
    prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*$")]
    bucket: Literal["output", "data", "intermediate"] = Field(
        "output", description="which platform bucket receives the copy"
    )


class DuckDBDelivery(_Delivery):
    to: Literal["duckdb"]
    table: TableName
    path: str | None = Field(None, description="database file; defaults to the platform's warehouse")


Delivery = Annotated[
    SnowflakeDelivery | PostgresDelivery | S3Delivery | DuckDBDelivery, Field(discriminator="to")
]


class Notify(StrictModel):
    on_failure: list[Email] = Field(default_factory=list)
    on_retry: list[Email] = Field(default_factory=list)


OVERRIDABLE = (
    "description",
    "schedule",
    "start_date",
    "catchup",
    "tags",
    "retries",
    "retry_delay",
    "runtime",
    "compute",
    "fan_out",
    "parameters",
    "notebooks",
    "deliver",
    "notify",
)


class EnvironmentOverride(StrictModel):
    """Per-environment replacement values; mappings merge key by key, everything else replaces."""

    description: Any = None
    schedule: Any = None
    start_date: Any = None
    catchup: Any = None
    tags: Any = None
    retries: Any = None
    retry_delay: Any = None
    runtime: dict[str, Any] | None = None
    compute: dict[str, Any] | None = None
    fan_out: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None
    notebooks: list[Any] | None = None
    deliver: list[Any] | None = None
    notify: dict[str, Any] | None = None


class JobSpec(StrictModel):
    """One YAML file: one project, one DAG per environment."""

    version: Literal[1]
    project: ProjectName = Field(description="dag id and S3 prefix: lowercase letters, digits and '-'")
    owner: str = Field(min_length=1)
    description: str = ""
    project_dir: str = Field(".", description="folder with the notebooks, relative to this file")
    schedule: Schedule = Field(None, description="cron, an Airflow preset, or null for manual only")
    start_date: dt.date
    catchup: bool = False
    tags: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list)
    retries: int = Field(1, ge=0, le=10)
    retry_delay: Duration = "5m"
    runtime: Runtime = Field(default_factory=Runtime)
    compute: Compute
    fan_out: FanOut | None = None
    parameters: Parameters = Field(default_factory=dict, description="every notebook, every value")
    notebooks: list[Notebook] = Field(min_length=1, description="run in this order")
    deliver: list[Delivery] = Field(default_factory=list)
    notify: Notify = Field(default_factory=Notify)
    environments: dict[Identifier, EnvironmentOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _parameter_names_free(self) -> JobSpec:
        reserved = set(STANDARD_PARAMETERS) | ({self.fan_out.name} if self.fan_out else set())
        sources: list[dict[str, Any]] = [self.parameters, *(nb.parameters for nb in self.notebooks)]
        if self.fan_out:
            sources.extend(self.fan_out.parameters.values())
        clashes = sorted({name for params in sources for name in params if name in reserved})
        if clashes:
            raise ValueError(
                f"parameter names {', '.join(clashes)} are set by the factory; rename them"
            )
        paths = [nb.path for nb in self.notebooks]
        stems = [nb.stem for nb in self.notebooks]
        if len(set(stems)) != len(stems):
            raise ValueError(f"notebook names must be unique: {', '.join(paths)}")
        return self

    @property
    def values(self) -> list[str]:
        return list(self.fan_out.values) if self.fan_out else []
