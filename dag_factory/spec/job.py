"""The job spec a data scientist writes next to their notebooks (no Airflow import here)."""

from __future__ import annotations

import datetime as dt
import keyword
import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import (
    AfterValidator,
    Field,
    GetJsonSchemaHandler,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from dag_factory.errors import suggest
from dag_factory.spec.asset_uris import ASSET_URI_PATTERN, check_asset_uri
from dag_factory.spec.rules import Violation, raise_violations, rule_error
from dag_factory.spec.text import FREE, PROSE
from dag_factory.spec.types import Duration, Identifier, Parameters, SchemaExtra, StrictModel, TagValue

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
SpecParameters = Annotated[
    Parameters,
    SchemaExtra.of(propertyNames={"not": {"enum": [*STANDARD_PARAMETERS, *sorted(keyword.kwlist)]}}),
]
# What the JSON Schema can say of the rules below (validators give the messages).
_CRON_SCHEMA = {"pattern": "^\\s*[^@\\s]\\S*(\\s+\\S+){4}\\s*$"}
_RELATIVE = "^(?![/~])(?!(.*/)?\\.\\.(/|$))"  # not absolute, no '..' segment
# the file name (the task id's part): no ASCII character Airflow's [\w.-] refuses
_NOTEBOOK_SCHEMA = SchemaExtra.of(pattern=_RELATIVE + r"(?:[^\\]*/)?[^/\\\s!-,:-@\[\]^`{-~]+\.ipynb$")
_RELATIVE_SCHEMA = SchemaExtra.of(pattern=_RELATIVE + "[^\\\\]+$")


def _check_schedule(value: str | None) -> str | None:
    if value is None or value in SCHEDULE_PRESETS:
        return value
    if value.startswith("@"):
        raise ValueError(f"unknown preset {value!r}; use one of {', '.join(SCHEDULE_PRESETS)}")
    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError(f"invalid cron expression {value!r}; use 5 fields, e.g. '0 4 * * MON'")
    return value


_TASK_ID_PART = re.compile(r"[\w.-]{1,200}")  # Airflow's task id rule, ^[\w.-]+$, and room for a prefix


def _check_notebook_path(value: str) -> str:
    path = PurePosixPath(value)
    if "\\" in value:
        shown = value.replace("\\", "/")
        raise rule_error(f"notebook path '{value}' uses a backslash", f"separate folders with '/': {shown}")
    if path.is_absolute() or value.startswith("~"):
        raise rule_error(f"notebook path {value!r} must be relative to the project folder")
    if ".." in path.parts:
        raise rule_error(f"notebook path {value!r} must stay inside the project folder (no '..')")
    if path.suffix != ".ipynb":
        raise rule_error(f"notebook path {value!r} must end in .ipynb")
    if not _TASK_ID_PART.fullmatch(path.stem):
        raise rule_error(
            f"notebook file name {path.stem!r} cannot be part of a task id (nb_<file name>)",
            "name the file with letters, digits, '_', '-' and '.', as Airflow task ids allow",
        )
    return value


NAME_MAX = 255  # bytes in one file or folder name, on every file system the steps run on


def _check_relative_file(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or value.startswith("~") or ".." in path.parts:
        raise rule_error(f"path {value!r} must be relative and stay inside the project folder")
    if any(len(part.encode()) > NAME_MAX for part in path.parts):
        raise rule_error(
            f"path {value[:40]!r}... has a name longer than {NAME_MAX} bytes: no file system holds it",
            "shorten the file or folder name",
        )
    return value


def _check_prefix(value: str) -> str:
    if any(part in (".", "..") for part in value.split("/")):
        raise rule_error(
            f"prefix {value!r} must stay inside the bucket's folders (no '.' or '..')",
            "write the folders below the bucket, e.g. exports/scores",
        )
    return value


AssetUri = Annotated[str, AfterValidator(check_asset_uri), SchemaExtra.of(pattern=ASSET_URI_PATTERN)]


class AssetSchedule(StrictModel):
    """Run when every one of these assets was updated since the last run (Airflow asset scheduling)."""

    assets: Annotated[list[AssetUri], SchemaExtra.of(uniqueItems=True)] = Field(
        min_length=1,
        description="URIs of deliveries, as `dag-factory plan` shows them, e.g. postgres://host:5432/db/schema/table",
    )


def _one_kind_of_schedule(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A mapping is an asset schedule, a string a cron or preset; errors of the other kind stay out."""
    if isinstance(value, dict):
        return AssetSchedule.model_validate(value)
    if value is None or isinstance(value, str):
        return _check_schedule(handler(value))
    raise rule_error(
        "a schedule is a cron expression, a preset, null, or a mapping {assets: [...]}",
        "e.g. '0 4 * * MON', '@daily' or {assets: [postgres://host:5432/db/schema/table]}",
    )


class _ScheduleSchema:
    """The schedule's JSON Schema: presets, a cron-shaped string, null or the asset mapping."""

    @staticmethod
    def __get_pydantic_json_schema__(core: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core)
        others = [option for option in schema["anyOf"] if option.get("type") != "string"]
        schema["anyOf"] = [{"enum": list(SCHEDULE_PRESETS)}, {"type": "string", **_CRON_SCHEMA}, *others]
        return schema


Schedule = Annotated[str | AssetSchedule | None, WrapValidator(_one_kind_of_schedule), _ScheduleSchema]
ProjectName = Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")]
FanOutValue = Annotated[str, Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,30}[A-Za-z0-9])?$")]
NotebookPath = Annotated[str, AfterValidator(_check_notebook_path), _NOTEBOOK_SCHEMA]
RelativeFile = Annotated[str, Field(min_length=1), AfterValidator(_check_relative_file), _RELATIVE_SCHEMA]
InstanceType = Annotated[str, Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Glob = RelativeFile
S3Prefix = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*$"),
    AfterValidator(_check_prefix),
    SchemaExtra.of(allOf=[{"not": {"pattern": "(^|/)\\.\\.?(/|$)"}}]),
]
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
    name: Annotated[Identifier, SchemaExtra.of(allOf=[{"not": {"enum": list(STANDARD_PARAMETERS)}}])] = Field(
        description="parameter name the value is passed under, e.g. country"
    )
    values: Annotated[list[FanOutValue], SchemaExtra.of(uniqueItems=True)] = Field(
        min_length=1, max_length=500
    )
    parameters: Annotated[dict[str, SpecParameters], FREE] = Field(
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
        first: dict[str, int] = {}
        repeats = []
        for i, value in enumerate(values):
            if value in first:
                repeats.append(
                    Violation(
                        (i,), f"duplicate value {value!r}, already values[{first[value]}]", "remove it", value
                    )
                )
            first.setdefault(value, i)
        raise_violations("FanOut", repeats)
        return values

    @model_validator(mode="after")
    def _known_values(self) -> FanOut:
        raise_violations(
            "FanOut",
            (
                Violation(
                    ("parameters", name),
                    f"parameters for {name!r}, which is not one of the fan-out values",
                    suggest(name, self.values),
                    name,
                    key=True,
                )
                for name in self.parameters
                if name not in self.values
            ),
        )
        return self


class Notebook(StrictModel):
    path: NotebookPath
    parameters: SpecParameters = Field(default_factory=dict)
    timeout: Duration | None = Field(None, description="defaults to compute.timeout")
    kernel: str | None = Field(None, min_length=1, description="defaults to runtime.kernel")
    retries: int = Field(
        0, ge=0, le=10, description="retries of the notebook's own error or timeout (default 0: fail at once)"
    )

    @property
    def stem(self) -> str:
        return PurePosixPath(self.path).stem


# Validation context of a target as the plan carries it (`deliver.dispatch`): the platform has filled in
# what the spec leaves to it, e.g. the bucket an S3 target's role names.
PLANNED = {"planned": True}


def _bucket_role_or_planned(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """A spec names a platform bucket by its role; a planned target holds the bucket (or local folder)
    that role resolved to."""
    if info.context == PLANNED and isinstance(value, str) and value:
        return value
    return handler(value)


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
    prefix: S3Prefix
    bucket: Annotated[Literal["output", "data", "intermediate"], WrapValidator(_bucket_role_or_planned)] = (
        Field("output", description="which platform bucket receives the copy")
    )


class DuckDBDelivery(_Delivery):
    to: Literal["duckdb"]
    table: TableName
    path: str | None = Field(
        None, min_length=1, description="database file; defaults to the platform's warehouse"
    )


Delivery = Annotated[
    SnowflakeDelivery | PostgresDelivery | S3Delivery | DuckDBDelivery, Field(discriminator="to")
]
# each delivery model by its `to` (the dispatcher picks a target's loader by it)
DELIVERY_MODELS: dict[str, type[_Delivery]] = {
    m.model_fields["to"].annotation.__args__[0]: m  # type: ignore[union-attr]
    for m in (SnowflakeDelivery, PostgresDelivery, S3Delivery, DuckDBDelivery)
}


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
    """Per-environment replacement values; mappings merge key by key, everything else replaces.

    The values are validated once merged, as the spec of that environment (so the string rule waits
    too); the JSON Schema types them after JobSpec's fields (`spec.schema`).
    """

    string_rule = FREE

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
    owner: TagValue = Field(description="team or person; also the instances' owner tag")
    description: Annotated[str, PROSE] = ""
    project_dir: str = Field(
        ".", min_length=1, description="folder with the notebooks, relative to this file"
    )
    schedule: Schedule = Field(
        None,
        description="cron, an Airflow preset, {assets: [...]} to run on deliveries, or null for manual only",
    )
    start_date: dt.date
    catchup: bool = False
    tags: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list)
    retries: int = Field(1, ge=0, le=10)
    retry_delay: Duration = "5m"
    runtime: Runtime = Field(default_factory=Runtime)
    compute: Compute
    fan_out: FanOut | None = None
    parameters: SpecParameters = Field(default_factory=dict, description="every notebook, every value")
    notebooks: list[Notebook] = Field(min_length=1, description="run in this order")
    deliver: list[Delivery] = Field(default_factory=list)
    notify: Notify = Field(default_factory=Notify)
    environments: dict[Identifier, EnvironmentOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_free(self) -> JobSpec:
        raise_violations("JobSpec", [*self._parameter_clashes(), *self._notebook_name_repeats()])
        return self

    def _parameter_clashes(self) -> list[Violation]:
        """Each parameter named like a standard parameter or the fan-out, at its own key."""
        fan_out = self.fan_out.name if self.fan_out else None
        sources: list[tuple[tuple[str | int, ...], dict[str, Any]]] = [(("parameters",), self.parameters)]
        sources += [(("notebooks", i, "parameters"), nb.parameters) for i, nb in enumerate(self.notebooks)]
        if self.fan_out:
            sources += [(("fan_out", "parameters", v), p) for v, p in self.fan_out.parameters.items()]
        found = []
        for loc, params in sources:
            for name in params:
                if name == fan_out:
                    message = (
                        f"parameter {name!r} is the fan-out name: the factory passes each value as {name}"
                    )
                    found.append(
                        Violation((*loc, name), message, "remove it, or rename the parameter", name, True)
                    )
                elif name in STANDARD_PARAMETERS:
                    message = f"parameter {name!r} is a standard parameter, set by the factory"
                    found.append(Violation((*loc, name), message, "rename it", name, True))
        return found

    def _notebook_name_repeats(self) -> list[Violation]:
        """A notebook whose file name an earlier one already has (names become task ids)."""
        first: dict[str, int] = {}
        found = []
        for i, notebook in enumerate(self.notebooks):
            if notebook.stem in first:
                j = first[notebook.stem]
                earlier = f"notebooks[{j}], {self.notebooks[j].path}"
                message = f"notebook name {notebook.stem!r} is already used by {earlier}"
                hint = "task ids are nb_<file name>: rename one of the files"
                found.append(Violation(("notebooks", i, "path"), message, hint, notebook.path))
            first.setdefault(notebook.stem, i)
        return found

    @property
    def values(self) -> list[str]:
        return list(self.fan_out.values) if self.fan_out else []

    @property
    def standard_parameters(self) -> tuple[str, ...]:
        """What every notebook is given whether or not its parameters cell declares it: the standard
        parameters and the fan-out's name."""
        return STANDARD_PARAMETERS + ((self.fan_out.name,) if self.fan_out else ())
