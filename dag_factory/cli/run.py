"""Run commands: run a job locally through real Airflow, and the demo (Airflow runs in a child process)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from dag_factory.cli.options import PlatformOption, add_commands, require_valid
from dag_factory.errors import EXIT_INVALID, EXIT_OK, UsageError

DEMO_SPEC = Path(__file__).resolve().parents[2] / "project_configs" / "churn-demo.yaml"
DEMO_DATE = "2026-01-05"


def _run(
    spec: Path,
    env: str,
    date: str | None,
    only: list[str],
    keep: bool,
    platform: Path | None,
    notebooks: bool = True,
) -> int:
    from rich.console import Console

    from dag_factory.local.job import (
        RunError,
        date_before_start,
        nothing_ran,
        prepare_job,
        report_lines,
        run_local,
        summarize,
    )
    from dag_factory.local.progress import render_summary
    from dag_factory.local.timing import render_split

    try:
        logical_date = dt.date.fromisoformat(date) if date else dt.date.today()  # as `init` writes start_date
    except ValueError:
        raise UsageError(f"--date {date!r} is not YYYY-MM-DD") from None
    if notebooks:  # a doomed run fails here in a second, not after minutes of setting up
        require_valid(spec, platform, "not run")
    console = Console()
    job = prepare_job(spec, env, platform, only)
    if (before := date_before_start(job.plan, logical_date)) is not None:
        raise RunError(f"not run: {before}")
    result = run_local(job, logical_date, keep, console)
    rows = summarize(job, result)
    label = job.plan.fan_out_name or "group"
    title = f"{job.plan.dag_id} {logical_date}: {result.state}"
    console.print(render_summary(rows, title=title, value_label=label))
    if result.interrupted:
        console.print("[red]interrupted[/red]: the run was stopped and its work directories removed")
    for line in report_lines(job, result):
        console.print(line, highlight=False, soft_wrap=True)
    console.print(render_split(result.timings), highlight=False)
    console.print(f"Airflow log of the run: {result.log_path}")
    if (why := nothing_ran(job, result, logical_date)) is not None:
        console.print(f"[red]nothing ran[/red]: {why}", highlight=False, soft_wrap=True)
        return EXIT_INVALID
    return EXIT_OK if result.succeeded else EXIT_INVALID


def run(
    spec: Annotated[Path, typer.Argument(help="the job spec to run")],
    env: Annotated[str, typer.Option(help="a local environment of the platform file")] = "local",
    date: Annotated[str | None, typer.Option(help="logical date, YYYY-MM-DD (default: today)")] = None,
    only: Annotated[list[str] | None, typer.Option(help="run only these fan-out values")] = None,
    keep: Annotated[bool, typer.Option(help="keep the work directories for debugging")] = False,
    platform: PlatformOption = None,
    notebooks: Annotated[bool, typer.Option(help="check the notebook contract first")] = True,
) -> None:
    """Run a job end to end on this machine through real Airflow (local backend)."""
    raise typer.Exit(_run(spec, env, date, only or [], keep, platform, notebooks))


def demo(date: Annotated[str, typer.Option(help="logical date, YYYY-MM-DD")] = DEMO_DATE) -> None:
    """Run the example job locally, then show where its outputs are and query the warehouse."""
    code = _run(DEMO_SPEC, "local", date, [], False, None)
    from dag_factory.local.demo import show_outputs

    show_outputs(DEMO_SPEC, date)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    add_commands(app, run, demo)
