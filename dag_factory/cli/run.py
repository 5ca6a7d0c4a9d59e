"""Run commands: run a job locally through real Airflow, the demo (Airflow runs in a child process), and
stop the Execution API the runs leave up."""

from __future__ import annotations

import datetime as dt
import functools
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dag_factory.cli.options import (
    PlatformOption,
    SpecArgument,
    add_commands,
    argument,
    flag,
    load_platform_for,
    require_valid,
)
from dag_factory.errors import EXIT_INVALID, EXIT_OK, UsageError
from dag_factory.extras import require_installed

if TYPE_CHECKING:
    from dag_factory.local.execution_server import ExecutionApi

DEMO_SPEC = Path(__file__).resolve().parents[2] / "project_configs" / "churn-demo.yaml"
DEMO_DATE = "2026-01-05"
LOCAL_PACKAGES = ("airflow", "psutil", "duckdb")  # the [local] extra: a local run, the warehouse


def _run(
    spec: Path,
    env: str,
    date: str | None,
    only: list[str],
    keep: bool,
    platform: Path | None,
    notebooks: bool = True,
) -> int:
    require_installed("local", LOCAL_PACKAGES, "dag-factory run")
    from rich.console import Console

    from dag_factory.local.execution_server import running_execution_api
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
    from dag_factory.local.timing import process_started, render_split

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
    result = run_local(job, logical_date, keep, console, started=process_started())
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
    why = nothing_ran(job, result, logical_date)
    if why is not None:
        say(f"nothing ran: {why}")
    if (server := running_execution_api(job.home)) is not None:
        say(server_left_up(server, _stop_command(spec, env, platform, job.platform_path)))
    return EXIT_INVALID if why is not None or not result.succeeded else EXIT_OK


def server_left_up(server: ExecutionApi, stop_command: str) -> str:
    """The line that ends a run whose home's Execution API stays up for the next run."""
    idle = server.idle_seconds
    after = f"{idle / 60:g} min" if idle % 60 == 0 else f"{idle:g} s"
    return (
        f"Execution API left up for the next run: {server.url} (pid {server.pid}); it stops after {after} "
        f"without a request, or now with: {stop_command}"
    )


def _stop_command(spec: Path, env: str, platform: Path | None, used: Path) -> str:
    """`dag-factory stop-server` with what it needs, run from here, to find the platform file ``used``."""
    from dag_factory.load.files import find_platform

    words = ["dag-factory", "stop-server"]
    if platform is not None:
        words += ["--platform", str(platform)]
    elif (found := find_platform(Path.cwd())) is None or found.resolve() != used.resolve():
        words.append(str(spec))  # the platform file is found near the spec, not near here
    if env != "local":
        words += ["--env", env]
    return shlex.join(words)


DateOption = Annotated[str | None, typer.Option(metavar="YYYY-MM-DD", help="logical date (default: today)")]
LocalEnvOption = Annotated[str, typer.Option(metavar="ENV", help="a local environment of the platform file")]


def run(
    spec: SpecArgument,
    env: LocalEnvOption = "local",
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
    if not DEMO_SPEC.is_file():
        raise UsageError(
            f"the demo runs the example project of a dag-factory source checkout ({DEMO_SPEC}), which an "
            "installed package does not include: run `make demo` in a checkout, or `dag-factory run SPEC` "
            "on a spec of yours (`dag-factory init` writes a first one)"
        )
    code = _run(DEMO_SPEC, "local", date, [], False, None)
    from dag_factory.local.demo import show_outputs

    show_outputs(DEMO_SPEC, date)
    raise typer.Exit(code)


def stop_server(
    target: Annotated[
        Path | None, argument("SPEC_OR_DIR", "a job spec or its folder (default: the working folder)")
    ] = None,
    env: LocalEnvOption = "local",
    platform: PlatformOption = None,
) -> None:
    """Stop the Execution API that local runs leave up.

    The one of the environment's Airflow home, found as `run` finds it (it also stops by itself when
    idle). Exit 0 when none runs, too. See docs/cli.md.
    """
    require_installed("local", ["psutil"], "dag-factory stop-server")
    from dag_factory.local.execution_server import stop_execution_api
    from dag_factory.local.run import airflow_home_in, local_root

    if target is not None and not target.exists():
        raise UsageError(f"no such file or folder: {target}")
    home = airflow_home_in(local_root(load_platform_for(target or Path.cwd(), platform), env))
    stopped = stop_execution_api(home)
    if stopped is None:
        typer.echo(f"no Execution API runs for {home}")
    else:
        typer.echo(f"stopped the Execution API at {stopped.url} (pid {stopped.pid}) of {home}")


def register(app: typer.Typer) -> None:
    add_commands(app, run, demo, stop_server)
