"""Build: a DagPlan -> an Airflow DAG (the airflow package is the only one that imports Airflow at module
level; this module puts the DAG together from its operators, sensors and task callables)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Asset, TaskGroup, TriggerRule
from airflow.sdk.bases.operator import BaseOperator
from airflow.sdk.definitions.edges import EdgeInfoType

from dag_factory.airflow import tasks
from dag_factory.airflow.environment import current_env
from dag_factory.airflow.links import set_links
from dag_factory.airflow.params import ChecksEnvironment, dag_macros, dag_params
from dag_factory.airflow.tasks import HOST_KEY_XCOM
from dag_factory.plan.model import (
    CreateInstanceArgs,
    CreateWorkdirArgs,
    DagPlan,
    DeliverArgs,
    GroupPlan,
    JobArgs,
    NotebookArgs,
    PrepareArgs,
    ResolveIpArgs,
    TaskPlan,
    TeardownArgs,
    lane_label,
)
from dag_factory.plan.planner import (
    API_CALL_TIMEOUT_S,
    LIFECYCLE_RETRIES,
    MAX_RETRY_DELAY_S,
    RETRY_BACKOFF,
    STEP_GRACE_S,
)
from dag_factory.plan.report import REPORT_HTML, REPORT_TASK, report_inputs
from dag_factory.plan.scripts import JOB_DATE_TEMPLATE, html_path

if TYPE_CHECKING:
    from dag_factory.airflow.operators import StepPolicy


class FactoryPythonOperator(ChecksEnvironment, PythonOperator):
    """A Python task of a factory DAG (deliveries, publishing, the report, the local instance tasks)."""


class FactoryEmptyOperator(EmptyOperator):
    """A task with nothing to do (a local work directory has no instance to stop): a class of our own, so
    that the plugin's links reach it (links.RunReportLink.operators) and no other DAG's empty tasks."""


def factory_operator_classes() -> tuple[type[BaseOperator], ...]:
    """Every operator class a factory DAG is built of (each of its tasks is an instance of one)."""
    from dag_factory.airflow.operators import GuardedBashOperator, GuardedSSHOperator
    from dag_factory.airflow.sensors import (
        CreateNotebookInstanceSensor,
        DeleteNotebookInstanceSensor,
        StopNotebookInstanceSensor,
    )

    return (
        FactoryPythonOperator,
        FactoryEmptyOperator,
        GuardedBashOperator,
        GuardedSSHOperator,
        CreateNotebookInstanceSensor,
        StopNotebookInstanceSensor,
        DeleteNotebookInstanceSensor,
    )


def _seconds(task: TaskPlan, extra: int = 0) -> dt.timedelta:
    return dt.timedelta(seconds=task.args.timeout_s + extra)


def _sagemaker_operator(plan: DagPlan, task: TaskPlan, conns: dict[str, str]) -> BaseOperator:
    """Reschedule-mode sensors: one API call per poke in the pool, no slot held while AWS works."""
    from dag_factory.airflow.sensors import (
        CreateNotebookInstanceSensor,
        DeleteNotebookInstanceSensor,
        StopNotebookInstanceSensor,
    )

    args = task.args
    assert isinstance(args, CreateInstanceArgs | TeardownArgs)
    common: dict[str, Any] = {
        "task_id": task.task_id,
        "aws_conn_id": conns["aws"],
        "pool": plan.api_pool["name"] if plan.api_pool else "default_pool",
        "dag_id_for_name": plan.dag_id,
        "env": plan.env,
        "group": args.group,
        "poke_interval": args.poll_s,
        "timeout": args.timeout_s,  # the whole wait, across pokes
        "execution_timeout": dt.timedelta(seconds=API_CALL_TIMEOUT_S),  # one poke
        "retries": LIFECYCLE_RETRIES,
    }
    if isinstance(args, CreateInstanceArgs):
        return CreateNotebookInstanceSensor(
            instance_type=args.instance_type,
            role_arn=args.role_arn,
            volume_size_gb=args.volume_size_gb,
            subnet_id=args.subnet_id,
            security_group_ids=args.security_group_ids,
            lifecycle_config=args.lifecycle_config,
            instance_security=args.instance_security,
            tags=args.tags,
            max_age_s=args.max_age_s,
            **common,
        )
    cls = StopNotebookInstanceSensor if task.kind == "stop_instance" else DeleteNotebookInstanceSensor
    return cls(**common)


def _step_policy(plan: DagPlan, task: TaskPlan) -> StepPolicy:
    """What both step operators take: who owns the retries of which failure, the outputs to keep clean."""
    from dag_factory.airflow.operators import StepPolicy

    args = task.args
    if isinstance(args, NotebookArgs):
        return StepPolicy(
            step_label=f"notebook {args.notebook}",
            infra_retries=plan.retries,
            notebook_retries=args.notebook_retries,
            outputs_prefix=args.output_prefix,
            guarded_step=args.guarded_step,
            executed_notebook=args.output_notebook,  # the notebook task's XCom names it
        )
    assert isinstance(args, PrepareArgs)  # the group's first step on its host
    return StepPolicy(step_label=task.task_id, infra_retries=plan.retries, installs_tools=args.installs_tools)


def _ssh_operator(plan: DagPlan, group: GroupPlan, task: TaskPlan, conns: dict[str, str]) -> BaseOperator:
    from dag_factory.airflow.operators import GuardedSSHOperator

    assert isinstance(task.args, NotebookArgs | PrepareArgs)
    step = _step_policy(plan, task)
    host_keys = plan.host_keys or "accept-new"
    # which earlier task of the group knows the instance's host key: the one that read the published
    # key (pinned), or the first SSH task, which recorded what the new instance showed (accept-new)
    source = {"pinned": "resolve_ip", "accept-new": "prepare"}.get(host_keys)
    host_key = None
    if source is not None and task.task_id != source:
        host_key = f"{{{{ ti.xcom_pull(task_ids='{group.group_id}.{source}', key='{HOST_KEY_XCOM}') }}}}"
    return GuardedSSHOperator(
        task_id=task.task_id,
        ssh_conn_id=conns["ssh"],
        aws_conn_id=conns["aws"],
        remote_host=f"{{{{ ti.xcom_pull(task_ids='{group.group_id}.resolve_ip') }}}}",
        command=task.args.command,
        cmd_timeout=None,  # not an idle timeout: the guard bounds the step on the instance
        conn_timeout=30,
        host_keys=host_keys,
        host_key=host_key,
        policy=step,
        retries=step.retries,
        execution_timeout=_seconds(task, STEP_GRACE_S),  # the guard's timeout fires first
    )


def _local_operator(plan: DagPlan, task: TaskPlan) -> BaseOperator:
    args = task.args
    if isinstance(args, CreateWorkdirArgs):
        return FactoryPythonOperator(
            task_id=task.task_id,
            python_callable=tasks.create_local_instance,
            op_kwargs={
                "workdir": args.workdir,
                "python": args.python,
                "env_cache": args.env_cache,
                "packages": args.packages,
                "code": args.code,
                "requirements": args.requirements,
            },
        )
    if isinstance(args, ResolveIpArgs):
        return FactoryPythonOperator(task_id=task.task_id, python_callable=tasks.resolve_local_ip)
    if task.kind == "stop_instance":
        return FactoryEmptyOperator(task_id=task.task_id)  # a work directory has nothing to stop
    if isinstance(args, TeardownArgs):  # delete_instance
        return FactoryPythonOperator(
            task_id=task.task_id,
            python_callable=tasks.remove_local_instance,
            op_kwargs={"workdir": args.workdir},
        )
    from dag_factory.airflow.operators import GuardedBashOperator

    assert isinstance(args, NotebookArgs | PrepareArgs)
    step = _step_policy(plan, task)
    return GuardedBashOperator(
        task_id=task.task_id,
        bash_command=args.command,
        policy=step,
        retries=step.retries,
        execution_timeout=_seconds(task, STEP_GRACE_S),  # the guard's timeout fires first
    )


def _operator(plan: DagPlan, group: GroupPlan, task: TaskPlan) -> BaseOperator:
    conns = plan.connections
    if isinstance(task.args, DeliverArgs):
        return FactoryPythonOperator(
            task_id=task.task_id,
            python_callable=tasks.deliver_outputs,
            op_kwargs={
                "target": task.args.target,
                "source_prefix": task.args.source_prefix,
                "logical_date": JOB_DATE_TEMPLATE,
                "partition_column": task.args.partition_column,
                "partition_value": task.args.partition_value,
                "connections": task.args.connections,
            },
            # no outlet: the target's one asset event per run is its publish task's (_publish_tasks)
            execution_timeout=_seconds(task),
        )
    if isinstance(task.args, JobArgs):
        from dag_factory.airflow.jobs import job_operator

        return job_operator(plan, group, task.args)
    if plan.backend == "local":
        return _local_operator(plan, task)
    if task.kind in ("prepare", "notebook"):
        return _ssh_operator(plan, group, task, conns)
    if isinstance(task.args, ResolveIpArgs):
        return FactoryPythonOperator(
            task_id=task.task_id,
            python_callable=tasks.resolve_private_ip,
            op_kwargs={
                "dag_id": plan.dag_id,
                "run_id": "{{ run_id }}",
                "group": group.group_id,
                "env": plan.env,
                "aws_conn_id": conns["aws"],
                "host_key_bucket": task.args.host_key_bucket,
            },
            pool=plan.api_pool["name"] if plan.api_pool else "default_pool",
            execution_timeout=_seconds(task),
        )
    return _sagemaker_operator(plan, task, conns)


def _with_links(plan: DagPlan, task: TaskPlan, op: BaseOperator) -> BaseOperator:
    if isinstance(task.args, NotebookArgs):
        args = task.args
        paths = {"Executed notebook": html_path(args.output_notebook), "Notebook source": args.source}
        set_links(op, paths, args.link_style, args.region, plan.connections["aws"])
    return op


SETUP_KINDS = ("create_instance", "resolve_ip", "prepare")


def _build_group(plan: DagPlan, group: GroupPlan) -> dict[str, BaseOperator]:
    with TaskGroup(group_id=group.group_id, tooltip=", ".join(group.values) or group.group_id):
        ops = {task.task_id: _with_links(plan, task, _operator(plan, group, task)) for task in group.tasks}
    for task in group.tasks:
        for upstream in task.upstream:
            ops[upstream] >> ops[task.task_id]
    if "stop_instance" not in ops:  # a SageMaker job: nothing to tear down
        return ops
    stop, delete = ops["stop_instance"], ops["delete_instance"]
    # everything a value needs before its notebooks is a setup: clearing any of its tasks in Airflow
    # clears the whole chain with it (a fresh instance, its IP and host key, the code and packages),
    # never a notebook on a new, unprepared instance with the old one's XComs
    setups = [ops[t.task_id] for t in group.tasks if t.kind in SETUP_KINDS]
    for teardown in (stop, delete):
        # a delete that still fails after its retries may leave an instance running: the run fails
        # (Airflow ignores a failed teardown for the run's state otherwise) and its report names it
        _as_teardown(teardown, setups, on_failure_fail_dagrun=teardown is delete)
    return ops


def _as_teardown(teardown: BaseOperator, setups: list[BaseOperator], on_failure_fail_dagrun: bool) -> None:
    """What ``teardown.as_teardown(setups=setups)`` does, with the edges set in one call (it sets one per
    setup, and each edge costs Airflow a hash of the whole DAG per task it touches), and ALL_DONE, not
    the default ALL_DONE_SETUP_SUCCESS: a create that failed after AWS made the instance must still be
    cleaned up (the operators treat a missing instance as done)."""
    teardown.is_teardown = True
    teardown.trigger_rule = TriggerRule.ALL_DONE
    teardown.on_failure_fail_dagrun = on_failure_fail_dagrun
    for setup in setups:
        setup.is_setup = True
    teardown.set_upstream(setups)


def _notifiers(plan: DagPlan) -> dict[str, Any]:
    """The spec's `notify` as task callbacks: an email per failed task, and per try that is retried."""
    if not any(plan.notify.values()):
        return {}  # the smtp provider is not imported for DAGs that send no mail
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    callbacks: dict[str, Any] = {}
    for key, callback, what in (
        ("on_failure", "on_failure_callback", "failed"),
        ("on_retry", "on_retry_callback", "is being retried"),
    ):
        emails = plan.notify.get(key) or []
        if emails:
            callbacks[callback] = SmtpNotifier(
                to=emails,
                subject=f"[dag-factory] {plan.dag_id} {what} in {plan.env}",
                html_content=(
                    f"Task {{{{ ti.task_id }}}} of {{{{ dag.dag_id }}}} {what}, run {{{{ run_id }}}}, "
                    "try {{ ti.try_number }}: {{ ti.log_url }}"
                ),
            )
    return callbacks


def build_dag(plan: DagPlan) -> DAG:
    default_args: dict[str, Any] = {
        "owner": plan.owner,
        "retries": plan.retries,
        "retry_delay": dt.timedelta(seconds=plan.retry_delay_s),
        "retry_exponential_backoff": RETRY_BACKOFF,  # a multiplier (True would be 1.0: no backoff)
        "max_retry_delay": dt.timedelta(seconds=MAX_RETRY_DELAY_S),
    }
    default_args.update(_notifiers(plan))
    with DAG(
        dag_id=plan.dag_id,
        description=plan.description or None,
        schedule=[Asset(uri) for uri in plan.schedule_assets] or plan.schedule,
        start_date=dt.datetime.fromisoformat(plan.start_date).replace(tzinfo=dt.UTC),
        catchup=plan.catchup,
        tags=set(plan.tags),
        max_active_tasks=plan.max_active_tasks,
        max_active_runs=1,
        default_args=default_args,
        doc_md=plan.doc_md,
        user_defined_macros=dag_macros(plan),
    ) as dag:
        built = {group.group_id: _build_group(plan, group) for group in plan.groups}
        _lanes(dag, plan, built)
        published = _publish_tasks(plan, built)  # first: the deliveries then lead to them
        _report_task(plan, built).set_upstream(published)  # the report runs last
    for task in dag.tasks:  # on the worker, before each task: is this worker configured for the DAG's
        if isinstance(task, ChecksEnvironment):  # environment? did this run choose the task's value?
            task.built_for = plan.env
    # The trigger form (which values, which parameter values), set once the tasks exist: Airflow deep-copies
    # a DAG's params into each task it adds (half of a parse's time) and serializes every copy (1.3 KB x
    # 160 tasks for churn-model); a task gets them from its DAG at run time anyway (process_params merges
    # the DAG's first)
    dag.params = dag_params(plan)  # type: ignore[assignment]  # attrs converts it to a ParamsDict
    return dag


def _lanes(dag: DAG, plan: DagPlan, built: dict[str, dict[str, BaseOperator]]) -> None:
    """At most max_parallel instances at once: a group creates its instance once the previous group of
    its lane deleted its own. Only such an edge keeps the count exact (Airflow's pools, max_active_tasks
    and max_active_tis_per_dagrun count running task instances, and an instance lives across tasks), so
    each edge is labelled as a lane rather than a data dependency; a task-to-task edge with the label set
    on the DAG, not ``Label`` (which, across groups, turns the edge into group >> group: every leaf of the
    previous group, its deliveries too, before the next group)."""
    label: EdgeInfoType = {"label": lane_label(plan.max_parallel)}
    for group in plan.groups:
        if group.after_group:
            # a SageMaker job's group is its job (and deliveries): the lane waits for the job
            before = built[group.after_group].get("delete_instance") or built[group.after_group]["run_job"]
            first = built[group.group_id].get("create_instance") or built[group.group_id]["run_job"]
            before >> first
            dag.set_edge_info(before.task_id, first.task_id, label)
            first.trigger_rule = TriggerRule.ALL_DONE


def _publish_tasks(plan: DagPlan, built: dict[str, dict[str, BaseOperator]]) -> list[BaseOperator]:
    """Per delivery target with an asset: one task outside the groups, after every value's delivery to
    it (all_success), whose outlet is the target's table or prefix. A DAG scheduled on it (spec:
    schedule.assets) starts once per run, when the whole date has landed; a run where a delivery failed
    records no event for that target until it is repaired. Cheap: it reads the deliveries' XComs only."""
    published: list[BaseOperator] = []
    for publish in plan.publish:
        op = FactoryPythonOperator(
            task_id=publish.task_id,
            python_callable=tasks.publish_delivery,
            op_kwargs={"asset": publish.asset, "deliveries": publish.deliveries, "run_id": "{{ run_id }}"},
            outlets=[Asset(publish.asset)],
            execution_timeout=dt.timedelta(seconds=API_CALL_TIMEOUT_S),
        )
        deliveries = [built[group][task] for group, _, task in (t.partition(".") for t in publish.deliveries)]
        op.set_upstream(deliveries)  # in one call (see _as_teardown)
        published.append(op)
    return published


def _report_task(plan: DagPlan, built: dict[str, dict[str, BaseOperator]]) -> BaseOperator:
    """Last task of every run, also after failures: report.json/html beside the run's outputs."""
    report = FactoryPythonOperator(
        task_id=REPORT_TASK,
        python_callable=tasks.write_run_report,
        op_kwargs={
            "inputs": report_inputs(plan),
            "run_id": "{{ run_id }}",
            "aws_conn_id": plan.connections["aws"],
            "job_date": JOB_DATE_TEMPLATE,  # the notebooks' logical_date (not the context key of that name)
        },
        retries=0,
    )
    # a teardown, so that the run's state stays that of its work (Airflow ignores teardowns there),
    # with ALL_DONE so that it runs whatever failed
    notebook = next(
        t.args for g in plan.groups for t in g.tasks if isinstance(t.args, NotebookArgs | JobArgs)
    )
    inputs = report.op_kwargs["inputs"]
    set_links(report, {"Run report": f"{inputs['folder']}/{REPORT_HTML}"}, notebook.link_style,
              plan.region, plan.connections["aws"])  # fmt: skip
    report.as_teardown()
    report.trigger_rule = TriggerRule.ALL_DONE
    # the groups' last tasks (delete_instance, the deliveries), in one call (see _as_teardown)
    report.set_upstream([op for ops in built.values() for op in ops.values() if not op.downstream_list])
    return report


def dag_from_spec(
    spec_path: str | Path,
    env: str | None = None,
    platform: str | Path | None = None,
    only: list[str] | None = None,
) -> DAG:
    """What a DAG file calls: load, validate, plan, build.

    The plan comes from dag_factory.plan.cache when the spec, the platform file, the environment and
    the code are those of an earlier parse (keyed by their content); an invalid spec is never cached.
    """
    from dag_factory.airflow.dag_reuse import dag_for
    from dag_factory.load.files import find_platform
    from dag_factory.load.specs import load_platform_cached, load_spec
    from dag_factory.plan.cache import cached_plan
    from dag_factory.plan.planner import plan_dag

    spec_path = Path(spec_path)
    platform_path = find_platform(spec_path, Path(platform) if platform else None)
    env_name = env or current_env()
    only_values = tuple(only or ())

    def plan() -> DagPlan:
        loaded_platform = load_platform_cached(platform_path) if platform_path else None
        loaded = load_spec(spec_path, loaded_platform)
        return plan_dag(loaded, env_name, only=only_values)

    return dag_for(cached_plan(spec_path, platform_path, env_name, only_values, plan), build_dag)
