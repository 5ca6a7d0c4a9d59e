"""The plan: plain data describing one DAG (no Airflow), built by dag_factory.plan.planner."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Estimate:
    """The most one run can cost: every group's instance up for the whole `compute.timeout`."""

    instance_type: str
    instances: int
    timeout_s: int
    instance_hours_max: float
    usd_per_hour: float | None  # from the platform file's instance_prices; None when not listed
    cost_max_usd: float | None


DAG_TAG = "dag-factory"  # every generated DAG carries this Airflow tag
# The DAG's Jinja macro naming the code version a run syncs (dag_factory.compute.code_versions): the one
# current when the run started, the same in every lane and retry of the run.
CODE_VERSION_MACRO = "code_version"
CODE_VERSIONS_FOLDER = "versions"  # <code>/<project>/versions/<version>/: the deployed files


def code_version_dir(code_head: str, version: str) -> str:
    """The folder of one deployed code version under ``code_head`` (<code>/<project>)."""
    return f"{code_head}/{CODE_VERSIONS_FOLDER}/{version}"


CODE_VERSION_TEMPLATE = "{{ " + CODE_VERSION_MACRO + "(dag_run) }}"

TaskKind = Literal[
    "create_instance", "resolve_ip", "prepare", "notebook", "stop_instance", "delete_instance", "deliver",
    "job",
]

# What the planner gives each kind of task, and the Airflow layer (dag_factory.airflow.build) passes on to
# its operator: one model per kind, every field read by attribute. Slotted: a 1,000-DAG parse plans
# 160,000 of them. Each holds `timeout_s`, the task's own bound (the step's, the whole wait of a sensor).


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateInstanceArgs:
    """create_instance on SageMaker: the notebook instance of a group, made by a reschedule-mode sensor."""

    group: str
    dag_id: str
    poll_s: int  # between two pokes
    timeout_s: int
    instance_type: str
    volume_size_gb: int
    role_arn: str
    lifecycle_config: str | None
    instance_security: dict[str, Any]  # the platform's instance_security, as plain data
    subnet_id: str
    security_group_ids: list[str]
    tags: dict[str, str]  # project, owner, env
    max_age_s: int  # older instances of the DAG belong to no live run (planner.instance_max_age_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateWorkdirArgs:
    """create_instance on the local backend: a work directory whose venv clones the shared environment."""

    group: str
    dag_id: str
    timeout_s: int
    workdir: str
    python: str
    env_cache: str
    packages: list[str]
    code: str  # where the code versions are; the task resolves the one the run syncs
    requirements: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveIpArgs:
    group: str
    dag_id: str
    timeout_s: int
    poll_s: int | None = None  # SageMaker only
    host_key_bucket: str | None = None  # ssh.host_keys pinned: where the instance published its key


@dataclass(frozen=True, slots=True, kw_only=True)
class PrepareArgs:
    command: str
    installs_tools: str  # the work directory: the first step on the host installs the guard and tools
    timeout_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NotebookArgs:
    command: str
    guarded_step: str  # the guard's marker of the step: a retry stops what earlier tries left running
    notebook: str  # its path in the project
    kernel: str
    timeout_s: int
    output_notebook: str  # the executed notebook (templated: the run id)
    source: str  # the notebook in the code version the run syncs
    output_prefix: str  # the value's outputs
    notebook_retries: int
    value: str | None  # the fan-out value; None without a fan-out
    # for the run report: the value's parameters, and the notebook's own on top of them
    parameters: dict[str, Any]
    notebook_parameters: dict[str, Any]
    link_style: str  # how the Airflow UI links to files: file, console or presigned
    region: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TeardownArgs:
    """stop_instance and delete_instance (one object, shared by both tasks of a group)."""

    group: str
    dag_id: str
    timeout_s: int
    poll_s: int | None = None  # SageMaker only
    workdir: str | None = None  # local only: the work directory delete_instance removes


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverArgs:
    target: dict[str, Any]  # the spec's target as plain data, as planned for the environment
    asset: str | None  # the target's asset URI (plan.delivery_assets); None: the rows' place is unknown
    source_prefix: str
    partition_column: str | None
    partition_value: str | None
    connections: dict[str, str]
    timeout_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobArgs:
    """run_job on the `sagemaker-job` backend: one SageMaker Training Job runs the group's prepare and
    notebook steps (plan.job_script); the task defers its wait to the triggerer."""

    group: str
    dag_id: str
    timeout_s: int  # compute.timeout: the job's MaxRuntimeInSeconds
    poll_s: int
    script: str  # the container's command (Jinja: the run id, the code version)
    script_folder: str  # s3:// folder the task uploads the rendered script to (the job downloads it)
    image_uri: str
    role_arn: str
    instance_type: str
    volume_size_gb: int
    subnet_ids: list[str]
    security_group_ids: list[str]
    volume_kms_key_id: str | None
    output_kms_key_id: str | None
    output_path: str  # s3:// folder for what SageMaker itself writes (OutputDataConfig)
    max_wait_s: int | None  # managed spot: MaxWaitTimeInSeconds; None: on-demand
    tags: dict[str, str]  # project, owner, env
    notebook_retries: int  # the most any of its notebooks allows (notebooks[].retries)
    notebooks: list[str]  # the notebooks it runs, in order
    output_prefixes: list[str]  # each value's outputs (failed tries' are set aside before a retry)
    run_folder: str  # the run's outputs (templated): <output>/<project>/{{ run_id }}
    value_parameters: dict[str, dict[str, Any]]  # for the run report: each value's parameters
    link_style: str  # how the Airflow UI links to files: console or presigned


TaskArgs = (
    JobArgs
    | CreateInstanceArgs
    | CreateWorkdirArgs
    | ResolveIpArgs
    | PrepareArgs
    | NotebookArgs
    | TeardownArgs
    | DeliverArgs
)
TASK_ARGS: tuple[type[TaskArgs], ...] = (
    CreateInstanceArgs, CreateWorkdirArgs, ResolveIpArgs, PrepareArgs, NotebookArgs, TeardownArgs,
    DeliverArgs, JobArgs,
)  # fmt: skip


@dataclass(frozen=True)
class TaskPlan:
    task_id: str  # inside its group
    kind: TaskKind
    upstream: tuple[str, ...]  # task ids inside the same group
    args: TaskArgs  # the model of its kind


def lane_label(max_parallel: int) -> str:
    """The label of a lane's edge (one group's delete_instance -> the next group's create_instance of its
    lane): it orders instances, it passes no data."""
    return f"lane: max_parallel {max_parallel}"


@dataclass(frozen=True)
class GroupPlan:
    group_id: str
    values: tuple[str, ...]
    tasks: tuple[TaskPlan, ...]
    after_group: str | None = None  # previous group in the same lane (the edge is labelled lane_label)

    def task(self, task_id: str) -> TaskPlan:
        return next(t for t in self.tasks if t.task_id == task_id)


@dataclass(frozen=True)
class PublishPlan:
    """One asset event per run for a delivery target, at DAG level: once every value's deliver task of
    that target succeeded, its extra holds each value's row count (deliver tasks have no outlets)."""

    task_id: str  # publish_<name>, as the target's deliver_<name> (plan.delivery_names)
    asset: str  # the target's asset URI (plan.delivery_assets.delivery_asset)
    deliveries: dict[str, str | None]  # full deliver task id (group.task) -> its fan-out value


@dataclass(frozen=True)
class DagPlan:
    dag_id: str
    env: str
    backend: str
    owner: str
    description: str
    schedule: str | None  # cron or preset; None: manual, or on assets
    start_date: str
    catchup: bool
    tags: tuple[str, ...]
    retries: int
    retry_delay_s: int
    max_active_tasks: int
    max_parallel: int
    notify: dict[str, list[str]]
    api_pool: dict[str, Any] | None
    groups: tuple[GroupPlan, ...]
    fan_out_name: str | None
    connections: dict[str, str]  # Airflow connection ids of the platform environment
    host_keys: str | None  # the SSH host-key policy (platform ssh.host_keys); None: no SSH (local)
    estimate: Estimate
    doc_md: str
    schedule_assets: tuple[str, ...] = ()  # run when all of these asset URIs were updated
    # the trigger form: name -> JSON schema with default (plan.params.trigger_params)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    publish: tuple[PublishPlan, ...] = ()  # per delivery target with an asset: its one event per run
    code: str = ""  # where the project's code versions are: s3://<code>/<project> or the local folder
    region: str | None = None  # the environment's AWS region (None: local)
    spec_file: str = ""  # the spec the plan was made from, as its loader was given it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
