"""`dag-factory run`: validate, deploy to the local code bucket, build and run the DAG through Airflow.

This module never imports Airflow: the run happens in a child process (dag_factory.runner).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dag_factory.diagnose import suggest
from dag_factory.errors import DagFactoryError
from dag_factory.loader import LoadedSpec, find_platform, load_platform, load_spec
from dag_factory.plan import DagPlan, plan_dag
from dag_factory.runner.execute import RunResult
from dag_factory.runner.progress import SummaryRow
from dag_factory.spec.platform import LocalEnvironment

DEPLOY_IGNORE = (".git", ".ipynb_checkpoints", "__pycache__", "outputs", ".venv", "*.pyc")


class RunError(DagFactoryError):
    pass


@dataclass(frozen=True)
class LocalJob:
    loaded: LoadedSpec
    env: str
    plan: DagPlan
    root: Path
    only: tuple[str, ...]


def prepare_job(spec: Path, env: str, platform: Path | None, only: list[str]) -> LocalJob:
    platform_path = platform or find_platform(spec)
    if platform_path is None:
        raise RunError(f"{spec}: no platform.yaml found; pass --platform")
    loaded = load_spec(spec, load_platform(platform_path))
    settings = loaded.platform.settings.environments.get(env) if loaded.platform else None
    if settings is None:
        known = loaded.platform.settings.environments if loaded.platform else {}
        raise RunError(f"unknown environment {env!r} ({suggest(env, known)})")
    if not isinstance(settings, LocalEnvironment):
        raise RunError(
            f"environment {env!r} runs on {settings.backend}; `run` executes local environments only"
        )
    values = loaded.for_env(env).values
    unknown = [v for v in only if v not in values]
    if unknown:
        raise RunError(f"--only {unknown[0]!r} is not a fan-out value ({suggest(unknown[0], values)})")
    plan = plan_dag(loaded, env, only=tuple(only))
    root = (platform_path.parent / settings.root).resolve()
    return LocalJob(loaded, env, plan, root, tuple(only))


def deploy_locally(job: LocalJob) -> Path:
    """Copy the project into the local code bucket, as CI's deploy step copies it to S3."""
    settings = job.loaded.platform.settings.environments[job.env] if job.loaded.platform else None
    assert isinstance(settings, LocalEnvironment)
    target = job.root / settings.buckets.code / job.plan.dag_id
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(job.loaded.project_dir, target, ignore=shutil.ignore_patterns(*DEPLOY_IGNORE))
    return target


def write_dag_file(job: LocalJob, dags_dir: Path, platform: Path) -> Path:
    """The DAG file the scheduler and every worker process import: same spec, same env, same subset."""
    dags_dir.mkdir(parents=True, exist_ok=True)
    path = dags_dir / f"{job.plan.dag_id.replace('-', '_')}.py"
    path.write_text(
        "# Written by `dag-factory run` (airflow DAG loader for a local run).\n"
        "from dag_factory.build import dag_from_spec\n\n"
        f"dag = dag_from_spec({str(job.loaded.path.resolve())!r}, env={job.env!r}, "
        f"platform={str(platform.resolve())!r}, only={list(job.only)!r})\n"
    )
    return path


def notebook_error(path: Path) -> str:
    """'cell N: Error: message' for the first cell of an executed notebook that raised."""
    try:
        notebook = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    for index, cell in enumerate(notebook.get("cells", [])):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"cell {index}: {output.get('ename')}: {output.get('evalue')}"
    return ""


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
        notebooks = [t for t in group.tasks if t.kind == "notebook"]
        shown = notebooks[-1]
        for task in notebooks:  # the first notebook that did not succeed is the one to show
            if states.get(task.task_id) != "success":
                shown = task
                break
        executed = shown.args["output_notebook"].replace("{{ run_id }}", result.run_id)
        error = ""
        if failed:
            first = failed[0]
            error = notebook_error(Path(executed)) if first == shown.task_id else ""
            error = error or f"{first}: {states.get(first) or 'not run'}"
            error = error or next((ti.error for ti in tis if ti.state == "failed"), "")
        delivered = [
            x.value
            for x in result.xcoms
            if x.task_id.startswith(group.group_id + ".deliver_") and x.key == "return_value"
        ]
        rows.append(
            SummaryRow(
                value=group.group_id,
                status="failed" if failed else "success",
                duration=duration,
                executed_notebook=executed,
                rows_delivered=sum(int(v) for v in delivered) if delivered else None,
                error=error,
            )
        )
    return rows


def run_local(job: LocalJob, platform: Path, logical_date: dt.date, keep: bool, console: Any) -> RunResult:
    from dag_factory.runner.airflow_home import prepare_airflow_home
    from dag_factory.runner.execute import run_dag
    from dag_factory.runner.progress import LiveProgress

    deploy_locally(job)
    home = job.root / "airflow"
    env = prepare_airflow_home(home, parallelism=max(4, job.plan.max_active_tasks))
    env = {**env, "DAG_FACTORY_ENV": job.env, "DAG_FACTORY_KEEP_WORKDIRS": "1" if keep else "0"}
    dag_file = write_dag_file(job, Path(env["AIRFLOW__CORE__DAGS_FOLDER"]), platform)
    workdirs = job.root / "work" / job.plan.dag_id

    def cleanup() -> None:  # Ctrl-C or a crash: remove the run's work dirs like instances
        if not keep and workdirs.exists():
            shutil.rmtree(workdirs, ignore_errors=True)

    when = dt.datetime.combine(logical_date, dt.time(), tzinfo=dt.UTC)
    label = job.plan.fan_out_name or "group"
    steps = [task.task_id for task in job.plan.groups[0].tasks]  # columns in the order tasks run
    title = f"{job.plan.dag_id} {logical_date} ({job.env})"
    with LiveProgress(title=title, group_label=label, console=console, steps=steps) as live:
        return run_dag(
            dag_file,
            job.plan.dag_id,
            logical_date=when,
            env={**os.environ, **env},
            on_progress=live,
            cleanup=cleanup,
        )
