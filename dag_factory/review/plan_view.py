"""`dag-factory plan`: the DAG a spec produces, as a typed review (review.model) and as text, json,
markdown or mermaid.

Built from plan.plan_dag (no Airflow). Fan-out groups are identical except for their value and
per-value parameters, so one group's tasks are shown once, with `<name>` in place of the value, plus
the list of values and what differs per value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dag_factory.load.specs import LoadedSpec
from dag_factory.plan.model import (
    CreateInstanceArgs,
    CreateWorkdirArgs,
    DagPlan,
    DeliverArgs,
    GroupPlan,
    JobArgs,
    NotebookArgs,
    TaskPlan,
)
from dag_factory.plan.params import VALUES_PARAM
from dag_factory.plan.planner import (
    API_CALL_TIMEOUT_S,
    LIFECYCLE_RETRIES,
    MAX_RETRY_DELAY_S,
    RETRY_BACKOFF,
    SHARED_GROUP,
    instance_max_age_s,
    plan_dag,
)
from dag_factory.review.model import (
    Compute,
    FanOut,
    FormField,
    Parameters,
    Publish,
    RetryPolicy,
    Review,
    ReviewEstimate,
    Schedule,
    TaskRow,
    Timeout,
    Timeouts,
)
from dag_factory.spec.job import JobSpec
from dag_factory.spec.platform import AwsEnvironment, LocalEnvironment
from dag_factory.spec.types import parse_duration


def duration(seconds: int | None) -> str:
    if not seconds:
        return "-"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text


def schedule_in_words(schedule: str | None) -> str:
    if schedule is None:
        return "manual only (no schedule)"
    if schedule.startswith("@"):
        return {"@once": "once", "@continuous": "continuously"}.get(schedule, schedule[1:])
    try:
        from cron_descriptor import get_description

        return str(get_description(schedule))
    except Exception:  # cron-descriptor rejects some croniter-valid forms: show the cron alone
        return schedule


def value_text(value: Any) -> str:
    """A parameter value as JSON, non-ASCII text as it is written (välue, not v\\u00e4lue)."""
    return json.dumps(value, ensure_ascii=False)


def schedule_of(plan: DagPlan) -> Schedule:
    if plan.schedule_assets:
        words = "when all of these were updated: " + ", ".join(plan.schedule_assets)
        return Schedule(cron=None, assets=plan.schedule_assets, text=words)
    return Schedule(cron=plan.schedule, assets=(), text=schedule_in_words(plan.schedule))


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={value_text(v)}" for k, v in params.items())


def _task_detail(task: TaskPlan, spec: JobSpec, code: str) -> str:
    args = task.args
    if isinstance(args, CreateWorkdirArgs):
        return "local work dir + virtualenv (local backend)"
    if isinstance(args, CreateInstanceArgs):
        return f"{args.instance_type}, {args.volume_size_gb} GB, subnet {args.subnet_id}"
    if task.kind == "resolve_ip":
        return "instance -> network interface -> private ip (xcom)"
    if task.kind == "prepare":
        requirements = f" + {spec.runtime.requirements}" if spec.runtime.requirements else ""
        return f"sync {code}, install papermill=={spec.runtime.papermill_version}{requirements}"
    if isinstance(args, NotebookArgs):
        own = next(nb for nb in spec.notebooks if nb.path == args.notebook).parameters
        extra = f", {_params(own)}" if own else ""
        return f"{args.notebook} (kernel {args.kernel}{extra})"
    if isinstance(args, JobArgs):
        spot = f", managed spot (max wait {duration(args.max_wait_s)})" if args.max_wait_s else ""
        return (
            f"SageMaker job: {args.instance_type}, {args.volume_size_gb} GB{spot}: sync {code}, install "
            f"papermill=={spec.runtime.papermill_version}, run {', '.join(args.notebooks)}; "
            "waits in the triggerer"
        )
    if isinstance(args, DeliverArgs):
        target = args.target
        where = target.get("table") or f"{target.get('bucket')}/{target.get('prefix')}"
        asset = f", asset {args.asset}" if args.asset else ""
        return f"{target['to']} {where} <- {target['files']} ({target['mode']}{asset})"
    return "teardown: always runs (all_done), also after a failure"


def _template_tasks(group: GroupPlan, value: str | None) -> list[TaskPlan]:
    """A shared group holds every value's tasks (`nb_x__de`): keep the first value's as the template."""
    if group.group_id != SHARED_GROUP or value is None:
        return list(group.tasks)
    suffix = f"__{value}"
    return [t for t in group.tasks if "__" not in t.task_id or t.task_id.endswith(suffix)]


def _task_rows(plan: DagPlan, spec: JobSpec, code: str) -> tuple[TaskRow, ...]:
    group = plan.groups[0]
    value = group.values[0] if group.values else None
    label = f"<{plan.fan_out_name}>" if plan.fan_out_name else ""
    rows = []
    for task in _template_tasks(group, value):
        task_id = task.task_id.replace(f"__{value}", f"__{label}") if value else task.task_id
        upstream = tuple(u.replace(f"__{value}", f"__{label}") if value else u for u in task.upstream)
        rows.append(
            TaskRow(
                task_id=task_id,
                kind=task.kind,
                after=upstream,
                detail=_task_detail(task, spec, code),
                timeout=duration(task.args.timeout_s),
            )
        )
    return tuple(rows)


def _seconds(text: str) -> int:
    return int(parse_duration(text).total_seconds())


def timeouts(spec: JobSpec, settings: LocalEnvironment | AwsEnvironment) -> Timeouts:
    """Every timeout of a group: its number and who owns it (the spec or the platform file)."""
    platform = settings.timeouts
    return Timeouts(
        group=Timeout(_seconds(spec.compute.timeout), "compute.timeout"),
        notebooks={
            nb.stem: Timeout(
                _seconds(nb.timeout or spec.compute.timeout),
                "notebooks[].timeout" if nb.timeout else "compute.timeout",
            )
            for nb in spec.notebooks
        },
        create=Timeout(_seconds(platform.create), "platform timeouts.create"),
        prepare=Timeout(_seconds(platform.prepare), "platform timeouts.prepare"),
        deliver=Timeout(_seconds(platform.deliver), "platform timeouts.deliver"),
        teardown=Timeout(_seconds(platform.teardown), "platform timeouts.teardown"),
        api_call=Timeout(API_CALL_TIMEOUT_S, "dag-factory"),
    )


def describe(loaded: LoadedSpec, env: str) -> Review:
    """Everything a reviewer needs about the DAG of one environment."""
    plan = plan_dag(loaded, env)
    spec = loaded.for_env(env)
    assert loaded.platform is not None  # plan_dag checked it
    settings = loaded.platform.settings.environments[env]
    code = (
        f"s3://{settings.buckets.code}/{spec.project}/"
        if plan.backend != "local"
        else f"<local>/{settings.buckets.code}/{spec.project}/"
    )
    estimate = plan.estimate
    return Review(
        dag_id=plan.dag_id,
        env=env,
        backend=plan.backend,
        owner=plan.owner,
        description=plan.description,
        schedule=schedule_of(plan),
        start_date=plan.start_date,
        catchup=plan.catchup,
        retries=plan.retries,
        retry_delay=duration(plan.retry_delay_s),
        tags=plan.tags,
        notify=plan.notify,
        compute=Compute(
            instance_type=spec.compute.instance_type,
            volume_size_gb=spec.compute.volume_size_gb,
            isolation=spec.compute.isolation,
            max_parallel=spec.compute.max_parallel,
            timeout=spec.compute.timeout,
        ),
        fan_out=FanOut(spec.fan_out.name, tuple(spec.values)) if spec.fan_out else None,
        parameters=Parameters(
            global_=dict(spec.parameters),
            per_value={k: dict(v) for k, v in (spec.fan_out.parameters if spec.fan_out else {}).items()},
            per_notebook={nb.stem: dict(nb.parameters) for nb in spec.notebooks if nb.parameters},
        ),
        # what a manual run may override (Airflow's trigger form; docs/operations.md)
        trigger_form={
            name: FormField(type=schema["type"], default=schema["default"])
            for name, schema in plan.params.items()
        },
        groups=tuple(g.group_id for g in plan.groups),
        tasks=_task_rows(plan, spec, code),
        deliver=tuple(d.label for d in spec.deliver),
        # per target with an asset: the one event a run records, after every value's delivery
        publish=tuple(Publish(p.task_id, p.asset, tuple(p.deliveries)) for p in plan.publish),
        timeouts=timeouts(spec, settings),
        retry_policy=RetryPolicy(
            infrastructure=plan.retries,
            notebook={nb.stem: nb.retries for nb in spec.notebooks},
            delay=duration(plan.retry_delay_s),
            backoff=RETRY_BACKOFF,
            max_delay=duration(MAX_RETRY_DELAY_S),
            lifecycle=LIFECYCLE_RETRIES,
        ),
        instance_max_age=duration(instance_max_age_s(spec, settings))
        if plan.backend == "sagemaker"
        else None,
        code=code,
        estimate=ReviewEstimate(
            instances=estimate.instances,
            instance_type=estimate.instance_type,
            timeout=spec.compute.timeout,
            instance_hours_max=estimate.instance_hours_max,
            usd_per_hour=estimate.usd_per_hour,
            cost_max_usd=estimate.cost_max_usd,
        ),
    )


def estimate_text(review: Review) -> str:
    e = review.estimate
    text = f"{e.instances} x {e.instance_type} x {e.timeout}"
    text += f" = {e.instance_hours_max:g} instance-hours"
    if e.cost_max_usd is not None:
        text += f" x ${e.usd_per_hour:g}/h = ${e.cost_max_usd:.2f}"
    else:
        text += " (no price for this instance type in the platform file)"
    return text + " per run at most"


def _group_line(review: Review) -> str:
    fan = review.fan_out
    if not fan:
        return "one group (no fan-out)"
    if review.compute.isolation == "shared":
        return f"one shared instance runs all {len(fan.values)} {fan.name} values, one after another"
    return f"{len(fan.values)} groups, one per {fan.name}; each runs:"


def _wrap(words: Sequence[str], indent: str, width: int = 100) -> list[str]:
    lines, line = [], indent
    for word in words:
        if len(line) + len(word) + 1 > width and line.strip():
            lines.append(line.rstrip())
            line = indent
        line += word + " "
    lines.append(line.rstrip())
    return lines


def schedule_head(review: Review, none: str) -> str:
    """The cron or preset, `assets` for an asset schedule, else `none`."""
    return review.schedule.cron or ("assets" if review.schedule.assets else none)


@dataclass(frozen=True)
class _Limits:
    """A group's timeouts and retries in words, each part by name: the text shows one per line, the
    markdown the timeouts in one item and the retries in another."""

    group: str
    notebooks: str
    platform: str
    retries: str
    gc: str | None  # SageMaker: how long an instance lives at most


def _limits(review: Review) -> _Limits:
    t, policy = review.timeouts, review.retry_policy
    notebooks = ", ".join(
        f"{stem} {duration(n.seconds)}" + (" (compute.timeout)" if n.owner == "compute.timeout" else "")
        for stem, n in t.notebooks.items()
    )
    platform = ", ".join(f"{step} {duration(limit.seconds)}" for step, limit in (
        ("create", t.create), ("prepare", t.prepare), ("deliver", t.deliver)
    ))  # fmt: skip
    retried = {stem: n for stem, n in policy.notebook.items() if n}
    notebook_errors = ", ".join(f"{stem} {n}" for stem, n in retried.items()) or "none"
    gc = None
    if review.instance_max_age:
        gc = (
            f"an instance of this DAG lives at most {review.instance_max_age}; "
            "older ones whose run is over are orphans"
        )
    return _Limits(
        group=f"group {duration(t.group.seconds)} (compute.timeout: prepare and the notebooks together, "
        "enforced on the instance)",
        notebooks=f"notebooks (notebooks[].timeout): {notebooks}",
        platform=f"platform: {platform}, teardown {duration(t.teardown.seconds)} (stop, delete: each); "
        f"an AWS call {duration(t.api_call.seconds)}",
        retries=f"infrastructure faults: {review.retries} (after {policy.delay} to twice that, doubling, "
        f"at most {policy.max_delay}); notebook errors and timeouts: {notebook_errors}; "
        f"instance create/stop/delete: {policy.lifecycle}",
        gc=gc,
    )


def _limit_lines(review: Review) -> list[str]:
    limits = _limits(review)
    lines = [
        f"timeouts   {limits.group}",
        f"           {limits.notebooks}",
        f"           {limits.platform}",
        f"retries    {limits.retries}",
    ]
    if limits.gc:
        lines.append(f"gc         {limits.gc}")
    return lines


def _publish_text(publish: Publish, review: Review) -> str:
    fan = review.fan_out
    every = f"every {fan.name}'s delivery" if fan else "the delivery"
    return f"{publish.asset}: one asset event per run, after {every} ({publish.task_id})"


def _form_field(name: str, field: FormField) -> str:
    kind = field.type if isinstance(field.type, str) else field.type[0]
    if name == VALUES_PARAM:
        return f"{name}: which of the values to run (default: all)"
    if field.default is None:
        return f"{name} ({kind}): empty keeps what the spec sets per value or notebook"
    return f"{name} ({kind}): default {value_text(field.default)}"


def render_text(review: Review) -> str:
    c, fan = review.compute, review.fan_out
    lines = [
        f"{review.dag_id} ({review.env}, {review.backend} backend)",
        f"  {review.description}" if review.description else "",
        f"owner      {review.owner}",
        f"schedule   {schedule_head(review, '-')}: {review.schedule.text}",
        f"start      {review.start_date}, catchup {'on' if review.catchup else 'off'}",
        f"compute    {c.instance_type}, {c.volume_size_gb} GB, {c.isolation}, "
        f"at most {c.max_parallel} at once, timeout {c.timeout} per group",
    ]
    if fan:
        lines.append(f"fan-out    {fan.name}: {len(fan.values)} values")
        lines.extend(_wrap(fan.values, "           "))
    lines.append(f"code       {review.code}")
    lines.extend(_limit_lines(review))
    failure = review.notify.get("on_failure") or []
    if failure:
        lines.append(f"notify     on failure: {', '.join(failure)}")
    lines += ["", _group_line(review)]
    width = max(len(t.task_id) for t in review.tasks) + 2
    for task in review.tasks:
        timeout = f"  [timeout {task.timeout}]" if task.timeout != "-" else ""
        lines.append(f"  {task.task_id:<{width}}{task.detail}{timeout}")
    params = review.parameters
    lines += ["", "parameters"]
    lines.append(f"  every notebook: {_params(params.global_) or '-'}")
    for stem, own in params.per_notebook.items():
        lines.append(f"  {stem}: {_params(own)}")
    if fan:
        lines.append(f"  per {fan.name}: {fan.name}=<value>, standard ones (env, logical_date, run_id, ...)")
        for value, own in params.per_value.items():
            lines.append(f"  only {value}: {_params(own)}")
    if review.trigger_form:
        lines += ["", "a manual run may override (Airflow's trigger form)"]
        lines += [f"  {_form_field(name, field)}" for name, field in review.trigger_form.items()]
    lines += ["", f"deliver    {', '.join(review.deliver) or '-'}"]
    lines += [f"updates    {_publish_text(p, review)}" for p in review.publish]
    lines.append(f"estimate   {estimate_text(review)}")
    return "\n".join(line for i, line in enumerate(lines) if line or i > 2)


def render_markdown(review: Review) -> str:
    c, fan = review.compute, review.fan_out
    lines = [
        f"### `{review.dag_id}` in `{review.env}` ({review.backend})",
        "",
        review.description or "",
        "",
        f"- **schedule**: `{schedule_head(review, 'null')}`: {review.schedule.text}",
        f"- **compute**: `{c.instance_type}`, {c.volume_size_gb} GB, {c.isolation}, "
        f"at most {c.max_parallel} at once, timeout {c.timeout}",
    ]
    if fan:
        values = ", ".join(f"`{v}`" for v in fan.values)
        lines.append(f"- **fan-out** `{fan.name}` ({len(fan.values)}): {values}")
    limits = _limits(review)
    lines += [
        f"- **timeouts**: {limits.group}; {limits.notebooks}; {limits.platform}",
        f"- **retries**: {limits.retries}",
        f"- **deliver**: {', '.join(f'`{d}`' for d in review.deliver) or '-'}",
        *[f"- **updates**: {_publish_text(p, review)}" for p in review.publish],
        f"- **estimate**: {estimate_text(review)}",
        "",
        f"{_group_line(review)}",
        "",
        "| task | what | timeout |",
        "|---|---|---|",
    ]
    for task in review.tasks:
        detail = task.detail.replace("|", "\\|")
        lines.append(f"| `{task.task_id}` | {detail} | {task.timeout} |")
    params = review.parameters
    lines += [
        "",
        "| parameters | |",
        "|---|---|",
        f"| every notebook | `{_params(params.global_) or '-'}` |",
    ]
    lines += [f"| {stem} | `{_params(own)}` |" for stem, own in params.per_notebook.items()]
    lines += [f"| only `{value}` | `{_params(own)}` |" for value, own in params.per_value.items()]
    return "\n".join(lines)


def _mermaid_id(task_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in task_id)


def render_mermaid(review: Review) -> str:
    fan = review.fan_out
    title = f"each of {len(fan.values)} {fan.name} values: {', '.join(fan.values)}" if fan else review.dag_id
    lines = ["flowchart LR", f'  subgraph group["{title}"]']
    for task in review.tasks:
        lines.append(f'    {_mermaid_id(task.task_id)}["{task.task_id}<br/>{task.timeout}"]')
    for task in review.tasks:
        arrow = "-.->" if task.kind in ("stop_instance", "delete_instance") else "-->"
        for upstream in task.after:
            lines.append(f"    {_mermaid_id(upstream)} {arrow} {_mermaid_id(task.task_id)}")
    lines.append("  end")
    return "\n".join(lines)


def render_json(review: Review) -> str:
    return json.dumps(review.to_json(), indent=2, ensure_ascii=False)


RENDERERS: dict[str, Callable[[Review], str]] = {
    "text": render_text,
    "json": render_json,
    "markdown": render_markdown,
    "mermaid": render_mermaid,
}
