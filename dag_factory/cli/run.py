"""Run commands: run a job locally through real Airflow, and the demo (Airflow runs in a child process)."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from typing import Annotated

import typer

from dag_factory.cli.options import PlatformOption, SpecArgument, add_commands, flag, require_valid
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

    from dag_factory.local.progress import render_summary, summary_lines
    from dag_factory.local.progress import say as print_line
    from dag_factory.local.run import (
        RunError,
        date_before_start,
        nothing_ran,
        prepare_job,
        report_lines,
        run_local,
        summarize,
    )
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
    say = functools.partial(print_line, console)
    say(f"{job.plan.dag_id} {logical_date}: {result.state}")
    console.print(render_summary(rows, value_label=label))
    if result.interrupted:
        say("interrupted: the run was stopped and its work directories removed")
    for line in [*summary_lines(rows), *report_lines(job, result)]:
        say(line)
    say(render_split(result.timings))
    say("Airflow log of the run:")
    say(f"  {result.log_path}")
    if (why := nothing_ran(job, result, logical_date)) is not None:
        say(f"nothing ran: {why}")
        return EXIT_INVALID
    return EXIT_OK if result.succeeded else EXIT_INVALID


DateOption = Annotated[str | None, typer.Option(metavar="YYYY-MM-DD", help="logical date (default: today)")]


def run(
    spec: SpecArgument,
    env: Annotated[
        str, typer.Option(metavar="ENV", help="a local environment of the platform file")
    ] = "local",
    date: DateOption = None,
    only: Annotated[
        list[str] | None, typer.Option(metavar="VALUE", help="run only this fan-out value (repeatable)")
    ] = None,
    keep: Annotated[bool, flag("keep the work directories, to debug in them", "--keep")] = False,
    platform: PlatformOption = None,
    no_notebooks: Annotated[bool, flag("skip the notebook contract check", "--no-notebooks")] = False,
) -> None:
    """Run a job on this machine through real Airflow.

    The same DAG as in production, on the local backend; outputs go to the local warehouse. Exit 1
    when a value failed or nothing ran. See docs/local-runs.md.
    """
    raise typer.Exit(_run(spec, env, date, only or [], keep, platform, not no_notebooks))


def demo(
    date: Annotated[str, typer.Option(metavar="YYYY-MM-DD", help="logical date")] = DEMO_DATE,
) -> None:
    """Run the example job, then show its outputs.

    The churn demo of project_configs/, on the local backend, then a query of its warehouse.
    """
    code = _run(DEMO_SPEC, "local", date, [], False, None)
    from dag_factory.local.demo import show_outputs

    show_outputs(DEMO_SPEC, date)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    add_commands(app, run, demo)
