"""`dag-factory run`: validate, deploy to the local code bucket, build and run the DAG through Airflow.

This module never imports Airflow: the run happens in a child process (dag_factory.local.execute).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dag_factory import settings
from dag_factory.errors import DagFactoryError, UsageError, suggest
from dag_factory.load.files import require_platform
from dag_factory.load.specs import LoadedPlatform, LoadedSpec, load_platform, load_spec
from dag_factory.local.execute import RunResult
from dag_factory.local.failures import group_failure
from dag_factory.local.progress import SummaryRow
from dag_factory.local.timing import RunClock, split_run
from dag_factory.plan.model import (
    CreateWorkdirArgs,
    DagPlan,
    DeliverArgs,
    GroupPlan,
    NotebookArgs,
    code_version_dir,
)
from dag_factory.plan.planner import plan_dag
from dag_factory.plan.report import REPORT_HTML, REPORT_JSON, money, render_html, run_folder, target_label
from dag_factory.spec.platform import LocalEnvironment

log = logging.getLogger("dag_factory.local.run")


class RunError(DagFactoryError):
    pass


@dataclass(frozen=True)
class LocalJob:
    loaded: LoadedSpec
    env: str
    plan: DagPlan
    root: Path
    only: tuple[str, ...]

    @property
    def platform_path(self) -> Path:
        assert self.loaded.platform is not None  # prepare_job loads it
        return self.loaded.platform.path

    @property
    def home(self) -> Path:
        return airflow_home_in(self.root)


def local_root(platform: LoadedPlatform, env: str) -> Path:
    """The folder of a local environment: its buckets, work directories and Airflow home. Another
    backend's environment is a usage error."""
    environment = platform.environment(env)
    if not isinstance(environment, LocalEnvironment):
        raise UsageError(
            f"--env {env!r} runs on {environment.backend}; `run` executes local environments only"
        )
    return (platform.path.parent / environment.root).resolve()


def airflow_home_in(root: Path) -> Path:
    """The local Airflow home (metadata DB, logs, the Execution API's record) under a local root."""
    return root / "airflow"


def prepare_job(spec: Path, env: str, platform: Path | None, only: list[str]) -> LocalJob:
    """The job `run` would start; what the command line names wrong (the environment, a value) is a
    usage error, before anything runs."""
    loaded_platform = load_platform(require_platform(spec, platform))
    loaded_platform.environment(env)  # an unknown one first, then the spec, then another backend's
    loaded = load_spec(spec, loaded_platform)
    root = local_root(loaded_platform, env)
    values = loaded.for_env(env).values
    unknown = [v for v in only if v not in values]
    if unknown:
        raise UsageError(f"--only {unknown[0]!r} is not a fan-out value ({suggest(unknown[0], values)})")
    plan = plan_dag(loaded, env, only=tuple(only))
    return LocalJob(loaded, env, plan, root, tuple(only))


def date_before_start(plan: DagPlan, logical_date: dt.date | None) -> str | None:
    """Why a run of ``logical_date`` would run nothing because of the spec's start_date (None when not):
    Airflow schedules no task of a date before it, and the run would still end "success"."""
    start = dt.date.fromisoformat(plan.start_date[:10])
    if logical_date is None or logical_date >= start:
        return None
    return (
        f"--date {logical_date} is before the spec's start_date {start}: Airflow runs no task of an earlier "
        f"date. Pass --date {start} or later (or leave --date out: today), or move start_date."
    )


def nothing_ran(job: LocalJob, result: RunResult, logical_date: dt.date | None) -> str | None:
    """Why a run that did not fail ran no task of any value (None when some task of a value ran): it
    says "success" while nothing was computed, so the CLI exits 1 with this sentence."""
    group_tasks = [ti for group in job.plan.groups for ti in _group_rows(result, group.group_id)]
    if result.interrupted or any(ti.state in ("success", "failed", "up_for_retry") for ti in group_tasks):
        return None
    when = f"for {logical_date}" if logical_date else "without a logical date"
    label = job.plan.fan_out_name or "group"
    return (
        f"the run {when} ended {result.state} but Airflow ran no task of any {label}: check that the date is "
        f"on or after the spec's start_date {job.plan.start_date[:10]}, and the Airflow log of the run."
    )


def _group_rows(result: RunResult, group: str) -> list[Any]:
    return [ti for ti in result.task_instances if ti.task_id.startswith(group + ".")]


def summarize(job: LocalJob, result: RunResult) -> list[SummaryRow]:
    rows = []
    for group in job.plan.groups:
        tis = _group_rows(result, group.group_id)
        states = {ti.task_id.split(".", 1)[1]: ti.state for ti in tis}
        work = [t for t in group.tasks if t.kind in ("notebook", "deliver", "prepare", "create_instance")]
        failed = [t.task_id for t in work if states.get(t.task_id) not in ("success",)]
        starts = [ti.start for ti in tis if ti.start]
        ends = [ti.end for ti in tis if ti.end]
        duration = (max(ends) - min(starts)).total_seconds() if starts and ends else None
        notebooks = [(t.task_id, t.args) for t in group.tasks if isinstance(t.args, NotebookArgs)]
        shown = notebooks[-1][1]
        for task_id, args in notebooks:  # the first notebook that did not succeed is the one to show
            if states.get(task_id) != "success":
                shown = args
                break
        executed = shown.output_notebook.replace("{{ run_id }}", result.run_id)
        error = group_failure(group, tis, result.run_id) if failed else ""  # the real reason, never "failed"
        rows.append(
            SummaryRow(
                value=group.group_id,
                status="failed" if failed else "success",
                duration=duration,
                executed_notebook=executed,
                rows_delivered=_rows_per_target(group, result),
                error=error,
            )
        )
    return rows


def _rows_per_target(group: GroupPlan, result: RunResult) -> dict[str, int | None]:
    """Each delivery target's rows for the group, summed over its values in a shared group (None: no
    deliver task of the target returned a count)."""
    returned = {
        x.task_id: x.value
        for x in result.xcoms
        if x.task_id.startswith(group.group_id + ".") and x.key == "return_value"
    }
    delivered: dict[str, int | None] = {}
    for task in group.tasks:
        if isinstance(task.args, DeliverArgs):
            label, value = target_label(task.args.target), returned.get(f"{group.group_id}.{task.task_id}")
            delivered[label] = delivered.get(label)
            if value is not None:
                delivered[label] = (delivered[label] or 0) + int(value)
    return delivered


def report_lines(job: LocalJob, result: RunResult) -> list[str]:
    """Where the run report and the rendered notebooks are, and the actual cost beside the estimate."""
    folder = Path(run_folder(job.plan).replace("{{ run_id }}", result.run_id))
    try:
        report = json.loads((folder / REPORT_JSON).read_text())
    except (OSError, ValueError):
        return [f"no run report in {folder} (the report task did not run)"]
    total, estimate = report["total"], report["estimate"]
    actual = f"instance-hours {total['instance_hours']:.3f}, cost {money(total['cost_usd'])}"
    planned = f"{estimate['instance_hours_max']:.2f} h, {money(estimate['cost_max_usd'])}"
    lines = [
        f"{actual}; plan estimate at most {planned}",
        f"run report (and {REPORT_JSON} beside it):",
        f"  {folder / REPORT_HTML}",
        "rendered notebooks:",
    ]
    for value in report["values"]:
        lines += [
            f"  {notebook['html']}" for notebook in value["notebooks"] if Path(notebook["html"]).exists()
        ]
    return lines


def _prebuild_environment(plan: DagPlan) -> threading.Thread | None:
    """Build the shared environment now, beside Airflow's start-up (a first run's longest step); when
    it is there already, clone it for the first lane of values, so that their create_instance tasks
    find clones ready (they clone it themselves when none is, as right after a build).

    The create_instance tasks wait for a build on its lock; they build it themselves when this is off.
    """
    from dag_factory.compute.code_versions import FolderCodeStore, current_version
    from dag_factory.compute.shared_env import make_spares, shared_environment

    args = plan.groups[0].task("create_instance").args
    if not isinstance(args, CreateWorkdirArgs) or not args.env_cache:
        return None
    first_lane = min(len(plan.groups), plan.max_parallel)

    def build() -> None:
        try:
            requirements = args.requirements
            if requirements:  # in the version the run syncs: the one just deployed
                version = current_version(FolderCodeStore(Path(args.code)))
                requirements = f"{code_version_dir(args.code, str(version))}/{requirements}"
            inputs = (args.env_cache, args.python, args.packages, requirements)
            venv = shared_environment(*inputs, build=False)
            if venv is None:
                shared_environment(*inputs)
            else:
                make_spares(venv, first_lane)
        except Exception as exc:  # the tasks try again and report it where a user looks
            log.warning("building the shared environment beforehand failed: %s", exc)

    thread = threading.Thread(target=build, name="dag-factory-environment", daemon=True)
    thread.start()
    return thread


def run_local(
    job: LocalJob, logical_date: dt.date | None, keep: bool, console: Any, started: dt.datetime | None = None
) -> RunResult:
    """Deploy, run the DAG through Airflow, time it (``timings``: dag_factory.local.timing's split,
    also in the timings file beside the run's log and in the run report).

    ``logical_date`` None makes a run without one (its date is the day it runs, as for runs the REST
    API or an asset triggers with a null logical date). ``started``: where the wall time starts (the
    CLI passes its process's start); now when None."""
    from dag_factory.ops.deploy import deploy_project

    started = started or dt.datetime.now(dt.UTC)
    marks = {"run_started": started.isoformat()}
    deploy_project(job.loaded, job.env)  # the same sync as `dag-factory deploy`, into the local bucket
    marks["deployed"] = dt.datetime.now(dt.UTC).isoformat()
    builder = _prebuild_environment(job.plan)
    try:
        result = _run_local(job, logical_date, keep, console, marks)
    finally:
        if builder is not None:
            builder.join()
    finished = dt.datetime.now(dt.UTC)
    marks = {**marks, **result.marks, "finished": finished.isoformat()}
    clock = RunClock(
        started,
        dt.datetime.fromisoformat(marks["deployed"]),
        dt.datetime.fromisoformat(marks["home_ready"]),
        finished,
    )
    split = split_run(job.plan, result.task_instances, clock)
    with contextlib.suppress(OSError):
        timings = {"dag_id": job.plan.dag_id, "run_id": result.run_id, "marks": marks, "split": split}
        result.log_path.with_suffix(".timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    _add_split_to_report(job, result.run_id, split)
    return replace(result, marks=marks, timings={**result.timings, **split})


def _add_split_to_report(job: LocalJob, run_id: str, split: dict[str, float]) -> None:
    """The run report (written by the run's last task, before the run ended) gets the run's time split."""
    folder = Path(run_folder(job.plan).replace("{{ run_id }}", run_id))
    try:
        report = {**json.loads((folder / REPORT_JSON).read_text()), "time_split": split}
        (folder / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
        (folder / REPORT_HTML).write_text(render_html(report))
    except (OSError, ValueError):  # no report (the report task did not run): report_lines says so
        return


def _without_execution_api(environ: Any) -> dict[str, str]:
    """The shell's environment minus an Execution API URL of some other Airflow: the home has its own."""
    from dag_factory.local.execution_server import EXECUTION_API_VAR

    return {k: v for k, v in environ.items() if k != EXECUTION_API_VAR}


def _run_local(
    job: LocalJob, logical_date: dt.date | None, keep: bool, console: Any, marks: dict[str, str]
) -> RunResult:
    from dag_factory.airflow.dag_files import write_dag_file
    from dag_factory.local.airflow_home import prepare_airflow_home
    from dag_factory.local.execute import run_dag
    from dag_factory.local.execution_server import stop_unless_kept
    from dag_factory.local.progress import progress_display

    env = prepare_airflow_home(job.home, parallelism=max(4, job.plan.max_active_tasks))
    marks["home_ready"] = dt.datetime.now(dt.UTC).isoformat()
    env = {**env, settings.ENV: job.env, settings.KEEP_WORKDIRS: "1" if keep else "0"}
    dags = Path(env["AIRFLOW__CORE__DAGS_FOLDER"])
    dag_file = write_dag_file(job.loaded.path, dags, env=job.env, platform=job.platform_path, only=job.only)
    workdirs = job.root / "work" / job.plan.dag_id

    def cleanup() -> None:  # Ctrl-C or a crash: remove the run's work dirs like instances
        if not keep and workdirs.exists():
            shutil.rmtree(workdirs, ignore_errors=True)

    when = dt.datetime.combine(logical_date, dt.time(), tzinfo=dt.UTC) if logical_date else None
    label = job.plan.fan_out_name or "group"
    steps = [task.task_id for task in job.plan.groups[0].tasks]  # columns in the order tasks run
    title = f"{job.plan.dag_id} {logical_date or 'no logical date'} ({job.env})"
    try:
        display = progress_display(
            console, title=title, group_label=label, steps=steps, retry_delay_s=job.plan.retry_delay_s
        )
        with display as live:
            return run_dag(
                dag_file,
                job.plan.dag_id,
                logical_date=when,
                env={**_without_execution_api(os.environ), **env},
                on_progress=live,
                cleanup=cleanup,
            )
    finally:
        stop_unless_kept(env)  # the Execution API stays up for the next run, unless that is off
