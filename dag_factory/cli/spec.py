"""Spec commands: validate, schema, dags (none imports Airflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dag_factory import settings
from dag_factory.cli.options import (
    PlatformOption,
    add_commands,
    argument,
    flag,
    format_option,
    output_option,
)
from dag_factory.errors import EXIT_INVALID, EXIT_OK, UsageError
from dag_factory.validate.output import RENDERERS


def validate(
    paths: Annotated[list[Path], argument("PATH", "spec files or folders of specs")],
    output: Annotated[str, format_option(tuple(RENDERERS), "output")] = "text",
    platform: PlatformOption = None,
    no_notebooks: Annotated[bool, flag("skip the notebook contract check", "--no-notebooks")] = False,
) -> None:
    """Check specs and their platform file.

    Each problem is named at its file, line and key, with the fix. Exit 0 when every spec is valid, 1
    when one is not.
    """
    from dag_factory.validate.check import validate_paths

    results = validate_paths(paths, platform, not no_notebooks)
    typer.echo(RENDERERS[output](results))
    raise typer.Exit(EXIT_OK if all(r.valid for r in results) else EXIT_INVALID)


def schema(
    output: Annotated[Path | None, output_option("folder to write both schema files into")] = None,
    platform: Annotated[bool, flag("the platform file's schema, not the job spec's", "--platform")] = False,
) -> None:
    """Print a JSON Schema, or write both.

    Editors use them to check a spec as it is typed (schemas/ holds them, written by `make schema`).
    """
    from dag_factory.spec.schema import SCHEMA_FILES, render_schema, write_schemas

    if output is not None:
        try:
            written = write_schemas(output)
        except OSError as exc:
            raise UsageError(f"--output {output}: {exc.strerror or exc}") from None
        for target in written:
            typer.echo(f"wrote {target}")
        return
    model, title = SCHEMA_FILES["platform.schema.json" if platform else "notebook-job.schema.json"]
    typer.echo(render_schema(model, title), nl=False)


def dags(
    specs: Annotated[list[Path], argument("SPEC", "spec files or folders of specs")],
    output: Annotated[Path, output_option("Airflow's DAG folder")] = Path("dags"),
    check: Annotated[
        bool, flag("only check the DAG files are up to date (exit 1 if not)", "--check")
    ] = False,
    prune: Annotated[bool, flag("also remove DAG files whose spec is gone", "--prune")] = False,
    env: Annotated[
        str | None,
        typer.Option(
            metavar="ENV",
            help=f"pin the environment (default: ${settings.ENV} or the Variable dag_factory_env, read "
            "where Airflow parses)",
        ),
    ] = None,
    platform: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="pin the platform file (default: found where Airflow parses)"),
    ] = None,
) -> None:
    """Write one DAG file per spec into a DAG folder.

    A DAG file is a few lines that load its spec when Airflow parses it. Other specs' files in the
    folder are never touched. See docs/deploy.md.
    """
    from dag_factory.airflow.dag_files import (
        generated_for,
        orphaned_dag_files,
        prune_dag_files,
        stale_dag_files,
        write_dag_files,
    )
    from dag_factory.load.files import spec_files

    found = spec_files(specs)
    platforms = _require_platforms(found, platform)
    if env is not None:
        _check_pinned_env(platforms, env)
    if check:
        stale = stale_dag_files(found, output, env, platform)
        orphans = set(orphaned_dag_files(output))
        for path in stale:
            fix = "--prune removes it" if path in orphans else f"run dag-factory dags --output {output}"
            what = f"its spec {generated_for(path)} is gone" if path in orphans else "missing or out of date"
            typer.echo(f"stale: {path}: {what} ({fix})")
        raise typer.Exit(EXIT_INVALID if stale else EXIT_OK)
    for path in write_dag_files(found, output, env, platform):
        typer.echo(f"wrote {path}")
    if prune:
        for path in prune_dag_files(output):
            typer.echo(f"removed {path} (its spec is gone)")
    else:
        for path in orphaned_dag_files(output):
            typer.echo(f"orphaned: {path}: its spec {generated_for(path)} is gone (--prune removes it)")


def _require_platforms(specs: list[Path], explicit: Path | None) -> list[Path]:
    """Each spec's platform file: a DAG file whose spec has none cannot import in Airflow (its environment
    is unknown), so none is written."""
    from dag_factory.load.files import require_platform

    found = []
    for spec in specs:
        try:
            found.append(require_platform(spec, explicit))
        except UsageError as exc:
            raise UsageError(f"no DAG file written: {exc}; a DAG file without one cannot import") from None
    return found


def _check_pinned_env(platforms: list[Path], env: str) -> None:
    """A pinned environment must exist in every spec's platform file."""
    from dag_factory.load.specs import load_platform_cached

    for path in platforms:
        load_platform_cached(path).environment(env)


def register(app: typer.Typer) -> None:
    add_commands(app, validate, schema, dags)
