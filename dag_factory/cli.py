"""The `dag-factory` command. Airflow is imported only by the commands that build DAGs."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from dag_factory.errors import DagFactoryError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Validate notebook job specs and build, plan and run the Airflow DAGs they describe.",
)

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class OutputFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


PlatformOption = Annotated[
    Path | None,
    typer.Option(help="platform settings file; default: $DAG_FACTORY_PLATFORM or the nearest platform.yaml"),
]


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="spec files or folders of specs")],
    output: Annotated[OutputFormat, typer.Option("--format", help="text, json or github annotations")] = (
        OutputFormat.text
    ),
    platform: PlatformOption = None,
    notebooks: Annotated[bool, typer.Option(help="check the notebook contract too")] = True,
) -> None:
    """Validate specs (and platform files): exit 0 all valid, 1 any invalid, 2 usage error."""
    from dag_factory.validate import RENDERERS, NoSpecsFound, validate_paths

    try:
        results = validate_paths(paths, platform, notebooks)
    except NoSpecsFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    typer.echo(RENDERERS[output.value](results))
    raise typer.Exit(EXIT_OK if all(r.valid for r in results) else EXIT_INVALID)


@app.command()
def schema(
    write: Annotated[Path | None, typer.Option(help="folder to write both schema files into")] = None,
    platform: Annotated[bool, typer.Option("--platform", help="print the platform schema")] = False,
) -> None:
    """Print the job-spec JSON Schema, or write both schemas into a folder."""
    from dag_factory.schema import SCHEMA_FILES, render_schema, write_schemas

    if write is not None:
        for target in write_schemas(write):
            typer.echo(f"wrote {target}")
        return
    model, title = SCHEMA_FILES["platform.schema.json" if platform else "notebook-job.schema.json"]
    typer.echo(render_schema(model, title), nl=False)


@app.command()
def dags(
    specs: Annotated[list[Path], typer.Argument(help="spec files or folders")],
    out: Annotated[Path, typer.Option(help="Airflow DAG folder to write loader files into")] = Path("dags"),
    check: Annotated[
        bool, typer.Option(help="only check the loader files are fresh (exit 1 if not)")
    ] = False,
) -> None:
    """Write one small DAG loader file per spec into the Airflow DAG folder."""
    from dag_factory.dagfiles import spec_files, stale_loaders, write_loaders

    found = spec_files(specs)
    if check:
        stale = stale_loaders(found, out)
        for path in stale:
            typer.echo(f"stale: {path} (run dag-factory dags --out {out})")
        raise typer.Exit(EXIT_INVALID if stale else EXIT_OK)
    for path in write_loaders(found, out):
        typer.echo(f"wrote {path}")


DEMO_SPEC = Path(__file__).resolve().parent.parent / "project_configs" / "churn-demo.yaml"
DEMO_DATE = "2026-01-05"


def _run(spec: Path, env: str, date: str, only: list[str], keep: bool, platform: Path | None) -> int:
    import datetime as dt

    from rich.console import Console

    from dag_factory.loader import find_platform
    from dag_factory.local_run import prepare_job, run_local, summarize
    from dag_factory.runner.progress import render_summary

    try:
        logical_date = dt.date.fromisoformat(date)
    except ValueError:
        typer.echo(f"error: --date {date!r} is not YYYY-MM-DD", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    console = Console()
    job = prepare_job(spec, env, platform, only)
    platform_path = platform or find_platform(spec)
    assert platform_path is not None
    result = run_local(job, platform_path, logical_date, keep, console)
    rows = summarize(job, result)
    label = job.plan.fan_out_name or "group"
    console.print(render_summary(rows, title=f"{job.plan.dag_id} {date}: {result.state}", value_label=label))
    if result.interrupted:
        console.print("[red]interrupted[/red]: the run was stopped and its work directories removed")
    console.print(f"Airflow log of the run: {result.log_path}")
    return EXIT_OK if result.succeeded else EXIT_INVALID


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="the job spec to run")],
    env: Annotated[str, typer.Option(help="a local environment of the platform file")] = "local",
    date: Annotated[str, typer.Option(help="logical date, YYYY-MM-DD")] = DEMO_DATE,
    only: Annotated[list[str] | None, typer.Option(help="run only these fan-out values")] = None,
    keep: Annotated[bool, typer.Option(help="keep the work directories for debugging")] = False,
    platform: PlatformOption = None,
) -> None:
    """Run a job end to end on this machine through real Airflow (local backend)."""
    raise typer.Exit(_run(spec, env, date, only or [], keep, platform))


@app.command()
def demo(date: Annotated[str, typer.Option(help="logical date, YYYY-MM-DD")] = DEMO_DATE) -> None:
    """Run the example job locally, then show where its outputs are and query the warehouse."""
    code = _run(DEMO_SPEC, "local", date, [], False, None)
    from dag_factory.demo import show_outputs

    show_outputs(DEMO_SPEC, date)
    raise typer.Exit(code)


# Commands that live in their own modules register themselves here (none imports Airflow at import).
for _module in ("dag_factory.cli_review", "dag_factory.cli_ops"):
    __import__(_module, fromlist=["register"]).register(app)


def main() -> None:
    """Console entry point: our errors print as messages, never as tracebacks."""
    try:
        app()
    except DagFactoryError as exc:
        typer.echo(str(exc), err=True)
        sys.exit(EXIT_INVALID)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # an internal error: say so briefly, keep the traceback opt-in
        if os.environ.get("DAG_FACTORY_DEBUG"):
            raise
        typer.echo(
            f"internal error: {type(exc).__name__}: {exc} (set DAG_FACTORY_DEBUG=1 for details)", err=True
        )
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
