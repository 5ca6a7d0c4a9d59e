"""Plan: a validated spec + platform environment -> plain data describing the DAG (no Airflow).

Per fan-out value (or one group for `isolation: shared`) the plan holds, in order:
create_instance -> resolve_ip -> prepare -> nb_<notebook>... -> deliver_<target>..., with stop_instance
and delete_instance as teardowns of create_instance. Groups are dealt into `max_parallel`
lanes; a group starts after the previous group of its lane has deleted its instance, so no more
than `max_parallel` instances exist at once. Per delivery target with an asset URI, one DAG-level
publish task after every value's delivery records the run's one asset event.
"""

from __future__ import annotations

import functools
import math
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dag_factory.errors import DagFactoryError
from dag_factory.load.specs import LoadedSpec
from dag_factory.plan.delivery_assets import delivery_asset
from dag_factory.plan.delivery_names import deliver_task_id, delivery_names, publish_task_id
from dag_factory.plan.guard import (
    KILL_GRACE_S,
    StepBounds,
    step_marker,
    under_installed_guard,
)
from dag_factory.plan.job_script import job_script
from dag_factory.plan.model import (
    CODE_VERSION_TEMPLATE,
    DAG_TAG,
    CreateInstanceArgs,
    CreateWorkdirArgs,
    DagPlan,
    DeliverArgs,
    Estimate,
    GroupPlan,
    JobArgs,
    NotebookArgs,
    PrepareArgs,
    PublishPlan,
    ResolveIpArgs,
    TaskPlan,
    TeardownArgs,
    code_version_dir,
    lane_label,
)
from dag_factory.plan.params import OVERRIDES_JSON, VALUES_PARAM, trigger_params
from dag_factory.plan.report import JOB_TASK, redacted
from dag_factory.plan.scripts import (
    HostLayout,
    notebook_command,
    notebook_header,
    output_prefix_template,
    prepare_command,
    runtime_packages,
    runtime_parameters_json,
)
from dag_factory.spec.job import AssetSchedule, Delivery, JobSpec, Notebook
from dag_factory.spec.platform import (
    GROUP_PLACEHOLDER,
    AwsEnvironment,
    LocalEnvironment,
    SageMakerEnvironment,
    SageMakerJobEnvironment,
)
from dag_factory.spec.types import parse_duration

SHARED_GROUP = "shared"
API_CALL_TIMEOUT_S = 5 * 60  # one SageMaker/EC2 call with its adaptive retries (resolve_ip, each poke)
# create, stop and delete only make API calls, so a retry costs nothing but its delay; stop and delete
# must happen; and Airflow 3.3 can fail a reschedule-mode sensor on a stale executor event
# (apache/airflow#71172): they retry more than the spec's `retries`, which belongs to the costly steps
LIFECYCLE_RETRIES = 3
STEP_GRACE_S = KILL_GRACE_S + 60  # Airflow's execution_timeout of a step = its timeout + this
MAX_RETRY_DELAY_S = 3600  # exponential backoff stops growing here
RETRY_BACKOFF = 2.0  # each retry waits twice as long as the one before


class PlanError(DagFactoryError):
    pass


@functools.lru_cache(maxsize=1024)  # a plan reads the same few durations hundreds of times
def _seconds(duration: str) -> int:
    return int(parse_duration(duration).total_seconds())


def _activate(*words: str) -> str:
    """Source an activate script with nounset off: conda's scripts and packages' activate.d hooks read
    variables that may be unset (e.g. PS1), and the steps run under `set -u`."""
    return f"set +u; source {' '.join(shlex.quote(word) for word in words)}; set -u"


def _code_version_dir(code_head: str) -> str:
    """The folder of the code version the run syncs (dag_factory.compute.code_versions), as a template:
    the version is the one current when the run started, in every lane and retry."""
    return code_version_dir(code_head, CODE_VERSION_TEMPLATE)


# Every value in these shell lines is quoted: the platform's paths (checked by spec.platform as well),
# the group and the buckets. The local work dir holds Airflow Jinja, which renders inside the quotes.
def _local_layout(env: LocalEnvironment, root: Path, dag_id: str, group: str, project: str) -> HostLayout:
    # no ':' from the run id: the venv's bin folder goes on $PATH
    workdir = f'{root}/work/{dag_id}/{{{{ run_id | replace(":", "_") }}}}/{group}'
    code = _code_version_dir(f"{root}/{env.buckets.code}/{project}")
    install = "uv pip install --quiet" if shutil.which("uv") else "python -m pip install --quiet"
    source, target = shlex.quote(f"{code}/."), shlex.quote(f"{workdir}/project/")
    return HostLayout(
        workdir=workdir,
        activate=_activate(f"{workdir}/venv/bin/activate"),
        # a code version that is not there copies nothing: the step then says the project is missing
        sync=f"mkdir -p {target} && {{ [ ! -d {shlex.quote(code)} ] || cp -R {source} {target}; }}",
        install=install,
        code=code,
    )


def _sagemaker_layout(env: SageMakerEnvironment, project: str, spec: JobSpec, group: str) -> HostLayout:
    workdir = env.ssh.workdir.replace(GROUP_PLACEHOLDER, group)
    source = shlex.quote(_code_version_dir(f"s3://{env.buckets.code}/{project}") + "/")
    target = shlex.quote(f"{workdir}/project/")
    return HostLayout(
        workdir=workdir,
        activate=_activate(env.ssh.conda_activate, spec.runtime.conda_env),
        sync=f"aws s3 sync --delete --only-show-errors {source} {target}",
        install="pip install --quiet",
        code=_code_version_dir(f"s3://{env.buckets.code}/{project}"),
    )


def _job_layout(env: SageMakerJobEnvironment, project: str, spec: JobSpec, group: str) -> HostLayout:
    """In the job's container: a folder per try (a fresh container on AWS; the same machine in tests)."""
    workdir = f'{env.workdir}/{{{{ run_id | replace(":", "_") }}}}/{group}/{{{{ ti.try_number }}}}'
    code = _code_version_dir(f"s3://{env.buckets.code}/{project}")
    return HostLayout(
        workdir=workdir,
        activate=_activate(env.conda_activate, spec.runtime.conda_env),
        sync=f"aws s3 sync --delete --only-show-errors {shlex.quote(code + '/')} "
        f"{shlex.quote(workdir + '/project/')}",
        install="pip install --quiet",
        code=code,
    )


AnyEnvironment = LocalEnvironment | SageMakerEnvironment | SageMakerJobEnvironment


@dataclass(frozen=True)
class _Context:
    spec: JobSpec
    env_name: str
    env: AnyEnvironment
    root: Path | None  # local backend only
    overridable: bool = False  # a manual run may override spec parameters (plan.params)

    @property
    def dag_id(self) -> str:
        return self.spec.project

    def layout(self, group: str) -> HostLayout:
        if isinstance(self.env, LocalEnvironment):
            assert self.root is not None
            return _local_layout(self.env, self.root, self.dag_id, group, self.spec.project)
        if isinstance(self.env, SageMakerJobEnvironment):
            return _job_layout(self.env, self.spec.project, self.spec, group)
        return _sagemaker_layout(self.env, self.spec.project, self.spec, group)

    def code_head(self) -> str:
        """Where the project is deployed: s3://<code>/<project> or its local twin."""
        if self.root is not None:
            return f"{self.root}/{self.env.buckets.code}/{self.spec.project}"
        return f"s3://{self.env.buckets.code}/{self.spec.project}"

    def links(self) -> tuple[str, str | None]:
        """How the Airflow UI links to files (link style, region): file:// locally, per the platform
        file on SageMaker."""
        if isinstance(self.env, AwsEnvironment):
            return self.env.notebook_links, self.env.region
        return "file", None

    def output_head(self) -> str:
        """Output prefix up to the run id: s3://<output>/<project> or its local twin."""
        bucket = self.env.buckets.output
        if self.root is not None:
            return f"{self.root}/{bucket}/{self.spec.project}"
        return f"s3://{bucket}/{self.spec.project}"


def _value_parameters(ctx: _Context, value: str | None) -> dict[str, Any]:
    """What every notebook of a value gets: global, then per value, then the static standard ones."""
    spec = ctx.spec
    merged: dict[str, Any] = dict(spec.parameters)
    if spec.fan_out and value is not None:
        merged.update(spec.fan_out.parameters.get(value, {}))
        merged[spec.fan_out.name] = value
    return merged | _standard_parameters(ctx)


def _standard_parameters(ctx: _Context) -> dict[str, Any]:
    return {"env": ctx.env_name, "aws_account_id": ctx.env.account_id}


def _parameters(ctx: _Context, value: str | None, notebook: Notebook) -> dict[str, Any]:
    """Global, then per value, then per notebook; then the static standard parameters."""
    return _value_parameters(ctx, value) | notebook.parameters | _standard_parameters(ctx)


def _bounds(ctx: _Context, layout: HostLayout, task_id: str, timeout_s: int) -> StepBounds:
    return StepBounds(layout.workdir, task_id, timeout_s, _seconds(ctx.spec.compute.timeout))


def _notebook_tasks(ctx: _Context, group: str, value: str | None, first_upstream: str) -> list[TaskPlan]:
    spec = ctx.spec
    tail = value if value is not None else SHARED_GROUP
    layout = ctx.layout(group)
    suffix = f"__{value}" if group == SHARED_GROUP and value is not None else ""
    tasks: list[TaskPlan] = []
    upstream = first_upstream
    for notebook in spec.notebooks:
        task_id = f"nb_{notebook.stem}{suffix}"
        output_prefix = output_prefix_template(ctx.output_head(), tail)
        output_notebook = f"{output_prefix}/{Path(notebook.path).name}"
        timeout = _seconds(notebook.timeout or spec.compute.timeout)
        kernel = notebook.kernel or spec.runtime.kernel
        parameters = _parameters(ctx, value, notebook)
        command = notebook_command(
            layout,
            notebook.path,
            output_notebook,
            kernel,
            parameters,
            runtime_parameters_json(ctx.output_head(), tail),
            OVERRIDES_JSON if ctx.overridable else None,
            spec.standard_parameters,
        )
        shown = redacted(parameters)
        header = notebook_header(notebook.path, kernel, output_notebook, shown, ctx.overridable)
        link_style, region = ctx.links()
        args = NotebookArgs(
            # the group's prepare installed the guard; the command only calls it
            command=header + under_installed_guard(command, _bounds(ctx, layout, task_id, timeout)),
            # a retry stops what earlier tries left running before it sets aside what they wrote
            guarded_step=step_marker(_bounds(ctx, layout, task_id, timeout)),
            notebook=notebook.path,
            kernel=notebook.kernel or spec.runtime.kernel,
            timeout_s=timeout,
            output_notebook=output_notebook,
            source=f"{_code_version_dir(ctx.code_head())}/{notebook.path}",
            output_prefix=output_prefix,
            notebook_retries=notebook.retries,
            value=value,
            # for the run report: the value's parameters, and the notebook's own on top of them
            parameters=_value_parameters(ctx, value),
            notebook_parameters=dict(notebook.parameters),
            link_style=link_style,
            region=region,
        )
        tasks.append(TaskPlan(task_id, "notebook", (upstream,), args))
        upstream = task_id
    return tasks


def _deliver_target(ctx: _Context, target: Delivery) -> dict[str, Any]:
    """The target as plain data; locally, warehouse targets load into the DuckDB file."""
    data = {k: v for k, v in target.model_dump().items() if v is not None}
    if isinstance(ctx.env, LocalEnvironment) and target.to in ("snowflake", "postgres"):
        assert ctx.root is not None
        data = {**data, "to": "duckdb", "path": str(ctx.root / ctx.env.warehouse)}
        data.pop("stage", None)
    elif target.to == "duckdb" and not data.get("path"):
        if not isinstance(ctx.env, LocalEnvironment) or ctx.root is None:
            raise PlanError(f"duckdb target {target.table} needs a path outside the local environment")
        data["path"] = str(ctx.root / ctx.env.warehouse)
    elif target.to == "s3":
        bucket = getattr(ctx.env.buckets, target.bucket)
        data["bucket"] = f"{ctx.root}/{bucket}" if ctx.root is not None else bucket
    return data


def _deliver_tasks(ctx: _Context, group: str, value: str | None, upstream: str) -> list[TaskPlan]:
    spec = ctx.spec
    tail = value if value is not None else SHARED_GROUP
    suffix = f"__{value}" if group == SHARED_GROUP and value is not None else ""
    tasks = []
    for name, target in zip(delivery_names(spec.deliver), spec.deliver, strict=True):
        planned = _deliver_target(ctx, target)
        args = DeliverArgs(
            target=planned,
            asset=delivery_asset(planned, ctx.env),
            source_prefix=output_prefix_template(ctx.output_head(), tail),
            partition_column=spec.fan_out.name if spec.fan_out else None,
            partition_value=value,
            connections=ctx.env.connections.model_dump(),
            timeout_s=_seconds(ctx.env.timeouts.deliver),
        )
        tasks.append(TaskPlan(f"{deliver_task_id(name)}{suffix}", "deliver", (upstream,), args))
    return tasks


def _publish(spec: JobSpec, groups: list[GroupPlan]) -> tuple[PublishPlan, ...]:
    """Per delivery target with an asset URI, the one DAG-level task that records its asset event, after
    every value's delivery to it: a DAG scheduled on the target runs once per run, on the whole date."""
    published = []
    for name in delivery_names(spec.deliver):
        deliver = deliver_task_id(name)  # a shared group's are deliver_<name>__<value>
        tasks = [
            (group.group_id, task.task_id, task.args)
            for group in groups
            for task in group.tasks
            if isinstance(task.args, DeliverArgs)
            and task.task_id in (deliver, f"{deliver}__{task.args.partition_value}")
        ]
        asset = tasks[0][2].asset if tasks else None
        if asset is None:  # the platform file does not say where the rows land: nothing to publish
            continue
        deliveries = {f"{gid}.{task_id}": args.partition_value for gid, task_id, args in tasks}
        published.append(PublishPlan(publish_task_id(name), asset, deliveries))
    return tuple(published)


def _local_create_args(ctx: _Context, group: str, layout: HostLayout) -> CreateWorkdirArgs:
    """A work directory whose venv is a clone of the shared environment the prepare step would build."""
    assert isinstance(ctx.env, LocalEnvironment) and ctx.root is not None
    spec = ctx.spec
    return CreateWorkdirArgs(
        group=group,
        dag_id=ctx.dag_id,
        timeout_s=_seconds(ctx.env.timeouts.create),
        workdir=layout.workdir,
        python=sys.executable,
        env_cache=str(ctx.root / "envs"),
        packages=list(runtime_packages(spec.runtime.papermill_version)),
        # in the code version the run syncs, which the task resolves (after the environment check)
        code=ctx.code_head(),
        requirements=spec.runtime.requirements,
    )


def _sagemaker_create_args(ctx: _Context, group: str, env: SageMakerEnvironment) -> CreateInstanceArgs:
    spec = ctx.spec
    return CreateInstanceArgs(
        group=group,
        dag_id=ctx.dag_id,
        poll_s=_seconds(env.poll_interval),
        timeout_s=_seconds(env.timeouts.create),
        instance_type=spec.compute.instance_type,
        volume_size_gb=spec.compute.volume_size_gb,
        role_arn=env.role_arn,
        lifecycle_config=env.lifecycle_config,
        instance_security=env.instance_security.model_dump(),
        subnet_id=env.subnet_id,
        security_group_ids=list(env.security_group_ids),
        # "env": compute.naming.ENV_TAG, by which gc keeps to its own environment
        tags={"project": spec.project, "owner": spec.owner, "env": ctx.env_name},
        max_age_s=instance_max_age_s(spec, env),
    )


def _instance_tasks(ctx: _Context, group: str) -> tuple[list[TaskPlan], list[TaskPlan]]:
    """Setup (create, resolve, prepare) and teardown (stop, delete) for one instance."""
    spec, env = ctx.spec, ctx.env
    poll_s = _seconds(env.poll_interval) if isinstance(env, SageMakerEnvironment) else None
    layout = ctx.layout(group)
    create = (
        _sagemaker_create_args(ctx, group, env)
        if isinstance(env, SageMakerEnvironment)
        else _local_create_args(ctx, group, layout)
    )
    pinned = isinstance(env, SageMakerEnvironment) and env.ssh.host_keys == "pinned"
    resolve = ResolveIpArgs(
        group=group,
        dag_id=ctx.dag_id,
        timeout_s=API_CALL_TIMEOUT_S,
        poll_s=poll_s,
        # where the lifecycle configuration publishes it
        host_key_bucket=env.buckets.code if pinned else None,
    )
    prepare_timeout = _seconds(env.timeouts.prepare)
    body = prepare_command(layout, spec.runtime.papermill_version, spec.runtime.requirements)
    prepare = PrepareArgs(
        command=under_installed_guard(body, _bounds(ctx, layout, "prepare", prepare_timeout)),
        # the first step on the host: its operator installs the guard and the tools every step calls
        installs_tools=layout.workdir,
        timeout_s=prepare_timeout,
    )
    setup = [
        TaskPlan("create_instance", "create_instance", (), create),
        TaskPlan("resolve_ip", "resolve_ip", ("create_instance",), resolve),
        TaskPlan("prepare", "prepare", ("resolve_ip",), prepare),
    ]
    teardown_args = TeardownArgs(
        group=group,
        dag_id=ctx.dag_id,
        timeout_s=_seconds(env.timeouts.teardown),
        poll_s=poll_s,
        workdir=layout.workdir if ctx.root is not None else None,
    )
    teardown = [
        TaskPlan("stop_instance", "stop_instance", (), teardown_args),
        TaskPlan("delete_instance", "delete_instance", ("stop_instance",), teardown_args),
    ]
    return setup, teardown


def _group(ctx: _Context, group: str, values: list[str | None]) -> GroupPlan:
    setup, teardown = _instance_tasks(ctx, group)
    work: list[TaskPlan] = []
    last_notebooks: list[str] = []
    for value in values:
        notebooks = _notebook_tasks(ctx, group, value, "prepare")
        work.extend(notebooks)
        work.extend(_deliver_tasks(ctx, group, value, notebooks[-1].task_id))
        last_notebooks.append(notebooks[-1].task_id)
    stop = TaskPlan("stop_instance", "stop_instance", tuple(last_notebooks), teardown[0].args)
    real_values = tuple(v for v in values if v is not None)
    return GroupPlan(group, real_values, (*setup, *work, stop, teardown[1]))


JOB_SCRIPTS_FOLDER = "_jobs"  # s3://<code>/<project>/_jobs/: each job's rendered command


def _job_group(ctx: _Context, group: str, values: list[str | None]) -> GroupPlan:
    """One SageMaker job runs the group's prepare and notebook steps (plan.job_script), then each value's
    deliveries: no instance to create, reach or delete."""
    spec, env = ctx.spec, ctx.env
    assert isinstance(env, SageMakerJobEnvironment)
    layout = ctx.layout(group)
    prepare_timeout = _seconds(env.timeouts.prepare)
    body = prepare_command(layout, spec.runtime.papermill_version, spec.runtime.requirements)
    steps = [under_installed_guard(body, _bounds(ctx, layout, "prepare", prepare_timeout))]
    notebooks: list[NotebookArgs] = []
    deliveries: list[TaskPlan] = []
    for value in values:
        planned = _notebook_tasks(ctx, group, value, JOB_TASK)
        notebooks += [t.args for t in planned if isinstance(t.args, NotebookArgs)]
        steps += [t.args.command for t in planned if isinstance(t.args, NotebookArgs)]
        deliveries += _deliver_tasks(ctx, group, value, JOB_TASK)
    timeout_s = _seconds(spec.compute.timeout)
    job = JobArgs(
        group=group,
        dag_id=ctx.dag_id,
        timeout_s=timeout_s,
        poll_s=_seconds(env.poll_interval),
        script=job_script(layout.workdir, steps),
        script_folder=f"{ctx.code_head()}/{JOB_SCRIPTS_FOLDER}",
        image_uri=env.image_uri,
        role_arn=env.role_arn,
        instance_type=spec.compute.instance_type,
        volume_size_gb=spec.compute.volume_size_gb,
        subnet_ids=list(env.subnet_ids),
        security_group_ids=list(env.security_group_ids),
        volume_kms_key_id=env.volume_kms_key_id,
        output_kms_key_id=env.output_kms_key_id,
        output_path=f"{ctx.output_head()}/{JOB_SCRIPTS_FOLDER}",
        max_wait_s=_seconds(env.managed_spot.max_wait) if env.managed_spot else None,
        tags={"project": spec.project, "owner": spec.owner, "env": ctx.env_name},
        notebook_retries=max(args.notebook_retries for args in notebooks),
        notebooks=[args.notebook for args in notebooks],
        output_prefixes=sorted({args.output_prefix for args in notebooks}),
        run_folder=notebooks[0].output_notebook.rsplit("/", 2)[0],
        value_parameters={str(args.value): args.parameters for args in notebooks},
        link_style=env.notebook_links,
    )
    run_job = TaskPlan(JOB_TASK, "job", (), job)
    real_values = tuple(v for v in values if v is not None)
    return GroupPlan(group, real_values, (run_job, *deliveries))


def _lanes(groups: list[GroupPlan], max_parallel: int) -> list[GroupPlan]:
    out = []
    for i, group in enumerate(groups):
        previous = groups[i - max_parallel].group_id if i >= max_parallel else None
        out.append(GroupPlan(group.group_id, group.values, group.tasks, previous))
    return out


def retry_wait_s(retry_delay_s: int, try_number: int) -> tuple[int, int]:
    """The shortest and longest wait before the retry that follows try ``try_number`` (1 = the first).
    Airflow waits between ``retry_delay * RETRY_BACKOFF**(n-1)`` and twice that (a per-task jitter),
    capped at the max delay."""
    shortest = math.ceil(retry_delay_s * RETRY_BACKOFF ** (max(try_number, 1) - 1))
    return min(shortest, MAX_RETRY_DELAY_S), min(2 * shortest, MAX_RETRY_DELAY_S)


def retry_delays_s(retries: int, retry_delay_s: int) -> int:
    """The longest the waits between ``retries`` retries add up to."""
    return sum(retry_wait_s(retry_delay_s, n)[1] for n in range(1, retries + 1))


def instance_max_age_s(spec: JobSpec, env: AnyEnvironment) -> int:
    """The longest an instance can live in a run: every create try waits its full time, the group uses
    all of compute.timeout, stop and delete use every try, and every retry waits its longest delay.
    Older instances of this DAG belong to no live run (the orphan sweeper's default age)."""
    t = env.timeouts
    delay = _seconds(spec.retry_delay)
    tries, delays = LIFECYCLE_RETRIES + 1, retry_delays_s(LIFECYCLE_RETRIES, delay)
    create = _seconds(t.create) * tries + delays
    teardown = 2 * (_seconds(t.teardown) * tries + delays)
    return create + API_CALL_TIMEOUT_S + _seconds(spec.compute.timeout) + teardown


def _estimate(spec: JobSpec, env: AnyEnvironment, groups: int) -> Estimate:
    timeout_s = _seconds(spec.compute.timeout)
    hours = groups * timeout_s / 3600
    price = env.instance_prices.get(spec.compute.instance_type)
    return Estimate(
        instance_type=spec.compute.instance_type,
        instances=groups,
        timeout_s=timeout_s,
        instance_hours_max=round(hours, 2),
        usd_per_hour=price,
        cost_max_usd=round(hours * price, 2) if price is not None else None,
    )


def _schedule_text(spec: JobSpec) -> str:
    if isinstance(spec.schedule, AssetSchedule):
        return "when updated: " + ", ".join(spec.schedule.assets)
    return spec.schedule or "manual only"


def _parameter_lines(spec: JobSpec) -> list[str]:
    """The spec's parameters as an indented (code) block: global, per value, per notebook; one line
    each, values as Python literals (never markdown), sensitive names hidden as in the run report."""
    scopes: list[tuple[str, dict[str, Any]]] = [("", spec.parameters)]
    if spec.fan_out:
        scopes += [(f"{value}: ", spec.fan_out.parameters.get(value, {})) for value in spec.values]
    scopes += [(f"{nb.path}: ", nb.parameters) for nb in spec.notebooks]
    return [
        f"    {scope}{name} = {value!r}"
        for scope, parameters in scopes
        for name, value in redacted(parameters).items()
    ]


def _compute_line(spec: JobSpec, groups: int) -> str:
    """The instance, and how max_parallel bounds the instances: in lanes, when there are more groups."""
    compute, n = spec.compute, spec.compute.max_parallel
    line = f"* compute: {compute.instance_type}, {compute.isolation}"
    if groups == 1:
        return f"{line}: one instance"
    if groups <= n:
        return f"{line}: one instance per value, all {groups} at once (max_parallel {n})"
    return (
        f"{line}: one instance per value, at most {n} at once: the first {n} values start together, each"
        f" later one's `create_instance` waits for the `delete_instance` of the value {n} places before it"
        f" in the list above (the graph's edges labelled `{lane_label(n)}`, which pass no data)"
    )


def _code_line(ctx: _Context) -> str:
    head = ctx.code_head()
    return (
        f"* code: `{code_version_dir(head, '<version>')}`: a run syncs the version current when it started"
        f" (the last entry of `{head}/deploys/`, written by `dag-factory deploy`); its run report names it"
    )


def _parameters_intro(ctx: _Context) -> str:
    spec = ctx.spec
    line = (
        "Parameters: a notebook gets those its parameters cell declares (all of them where papermill cannot"
        " read the cell), and the standard ones whether declared or not: "
        f"{', '.join(spec.standard_parameters)}. A value's own over the global ones, a notebook's own over"
        " both"
    )
    if ctx.overridable:
        line += ", a manual run's choices in the trigger form over all"
    return line + ":"


def _doc_md(ctx: _Context, spec_path: Path, groups: int, publish: tuple[PublishPlan, ...] = ()) -> str:
    spec, env_name = ctx.spec, ctx.env_name
    values = ", ".join(spec.values) or "(none)"
    value_folder = f"<{spec.fan_out.name}>" if spec.fan_out else SHARED_GROUP
    names = zip(spec.deliver, delivery_names(spec.deliver), strict=True)
    deliver = ", ".join(f"{target.label} (`{deliver_task_id(name)}`)" for target, name in names)
    lines = [
        f"### {spec.project}",
        spec.description,
        "",
        f"* owner: {spec.owner}; environment: {env_name}",
        f"* schedule: {_schedule_text(spec)}",
        f"* fan-out: {spec.fan_out.name if spec.fan_out else '-'} = {values}",
        f"* notebooks: {', '.join(nb.path for nb in spec.notebooks)}",
        _compute_line(spec, groups),
        f"* deliver: {deliver or '-'}",
        *[f"* updates {p.asset}: one asset event per run, once every value is delivered" for p in publish],
        f"* executed notebooks, HTML and papermill logs: `{ctx.output_head()}/<run id>/{value_folder}/`",
        f"* run report: `{ctx.output_head()}/<run id>/report.html` (and report.json)",
        _code_line(ctx),
        f"* spec: `{spec_path}`",
        "",
        _parameters_intro(ctx),
        "",
        *(_parameter_lines(spec) or ["    (none)"]),
        "",
        "Generated by dag-factory from the job spec; edit the spec, not this DAG.",
    ]
    return "\n".join(lines)


def plan_dag(loaded: LoadedSpec, env_name: str, only: tuple[str, ...] = ()) -> DagPlan:
    """The DAG for one environment; `only` keeps a subset of the fan-out values (local runs)."""
    spec = loaded.for_env(env_name)
    if only and spec.fan_out:
        kept = [v for v in spec.fan_out.values if v in only]
        spec = spec.model_copy(update={"fan_out": spec.fan_out.model_copy(update={"values": kept})})
    if loaded.platform is None:
        raise PlanError(f"{loaded.path}: no platform file; pass --platform or set $DAG_FACTORY_PLATFORM")
    env = loaded.platform.settings.environments[env_name]
    root = (loaded.platform.path.parent / env.root).resolve() if isinstance(env, LocalEnvironment) else None
    if root is not None and "'" in str(root):
        raise PlanError(f"local root {root} must not contain a single quote")
    params = trigger_params(spec)
    ctx = _Context(spec, env_name, env, root, overridable=any(name != VALUES_PARAM for name in params))
    make_group = _job_group if isinstance(env, SageMakerJobEnvironment) else _group
    if spec.compute.isolation == "shared" or not spec.fan_out:
        values: list[str | None] = list(spec.values) or [None]
        groups = [make_group(ctx, SHARED_GROUP, values)]
    else:
        groups = [make_group(ctx, value, [value]) for value in spec.values]
    groups = _lanes(groups, spec.compute.max_parallel)
    publish = _publish(spec, groups)
    api_pool = env.api_pool.model_dump() if isinstance(env, AwsEnvironment) else None
    notify = spec.notify.model_dump()
    # tasks of one value run one after another, but after its last notebook its deliveries, stop and
    # delete run side by side: room for all of them in every lane
    max_active = max(1, min(spec.compute.max_parallel * (len(spec.deliver) + 2), 64))
    return DagPlan(
        dag_id=spec.project,
        env=env_name,
        backend=env.backend,
        owner=spec.owner,
        description=spec.description,
        schedule=None if isinstance(spec.schedule, AssetSchedule) else spec.schedule,
        start_date=spec.start_date.isoformat(),
        catchup=spec.catchup,
        tags=tuple(dict.fromkeys([*spec.tags, DAG_TAG, f"env:{env_name}"])),
        retries=spec.retries,
        retry_delay_s=_seconds(spec.retry_delay),
        max_active_tasks=max_active,
        max_parallel=spec.compute.max_parallel,
        notify=notify,
        api_pool=api_pool,
        groups=tuple(groups),
        fan_out_name=spec.fan_out.name if spec.fan_out else None,
        connections=env.connections.model_dump(),
        host_keys=env.ssh.host_keys if isinstance(env, SageMakerEnvironment) else None,
        estimate=_estimate(spec, env, len(groups)),
        doc_md=_doc_md(ctx, loaded.path.resolve(), len(groups), publish),
        schedule_assets=tuple(spec.schedule.assets) if isinstance(spec.schedule, AssetSchedule) else (),
        params=params,
        publish=publish,
        code=ctx.code_head(),
        region=env.region if isinstance(env, AwsEnvironment) else None,
        spec_file=str(loaded.path.resolve()),
    )
