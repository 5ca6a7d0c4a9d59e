"""Spec commands: validate, schema, dags (none imports Airflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dag_factory import settings
from dag_factory.cli.options import PlatformOption, add_commands, format_option
from dag_factory.errors import EXIT_INVALID, EXIT_OK, UsageError
from dag_factory.validate.report import RENDERERS


def validate(
    paths: Annotated[list[Path], typer.Argument(help="spec files or folders of specs")],
    output: Annotated[str, format_option(RENDERERS, "output")] = "text",
    platform: PlatformOption = None,
    notebooks: Annotated[bool, typer.Option(help="check the notebook contract too")] = True,
) -> None:
    """Validate specs (and platform files): exit 0 all valid, 1 any invalid, 2 usage error."""
    from dag_factory.validate.check import validate_paths

    results = validate_paths(paths, platform, notebooks)
    typer.echo(RENDERERS[output](results))
    raise typer.Exit(EXIT_OK if all(r.valid for r in results) else EXIT_INVALID)


def schema(
    write: Annotated[Path | None, typer.Option(help="folder to write both schema files into")] = None,
    platform: Annotated[bool, typer.Option("--platform", help="print the platform schema")] = False,
) -> None:
    """Print the job-spec JSON Schema, or write both schemas into a folder."""
    from dag_factory.spec.schema import SCHEMA_FILES, render_schema, write_schemas

    if write is not None:
        for target in write_schemas(write):
            typer.echo(f"wrote {target}")
        return
    model, title = SCHEMA_FILES["platform.schema.json" if platform else "notebook-job.schema.json"]
    typer.echo(render_schema(model, title), nl=False)


def dags(
    specs: Annotated[list[Path], typer.Argument(help="spec files or folders")],
    out: Annotated[Path, typer.Option(help="Airflow DAG folder to write the DAG files into")] = Path("dags"),
    check: Annotated[bool, typer.Option(help="only check the DAG files are fresh (exit 1 if not)")] = False,
    prune: Annotated[
        bool,
        typer.Option(
            help="also remove generated DAG files whose spec is gone (files of other specs that exist are "
            "never touched: several repositories may share the DAG folder)"
        ),
    ] = False,
    env: Annotated[
        str | None,
        typer.Option(
            help="pin the DAG files to this environment; without it each Airflow component resolves "
            "$DAG_FACTORY_ENV or the Variable dag_factory_env when it parses them"
        ),
    ] = None,
    platform: Annotated[
        Path | None,
        typer.Option(
            help="pin the DAG files to this platform file; without it they use what Airflow finds when it "
            f"parses them: ${settings.PLATFORM}, else the nearest platform.yaml above the spec"
        ),
    ] = None,
) -> None:
    """Write one small DAG file per spec into the Airflow DAG folder."""
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
        stale = stale_dag_files(found, out, env, platform)
        orphans = set(orphaned_dag_files(out))
        for path in stale:
            fix = "--prune removes it" if path in orphans else f"run dag-factory dags --out {out}"
            what = f"its spec {generated_for(path)} is gone" if path in orphans else "missing or out of date"
            typer.echo(f"stale: {path}: {what} ({fix})")
        raise typer.Exit(EXIT_INVALID if stale else EXIT_OK)
    for path in write_dag_files(found, out, env, platform):
        typer.echo(f"wrote {path}")
    if prune:
        for path in prune_dag_files(out):
            typer.echo(f"removed {path} (its spec is gone)")
    else:
        for path in orphaned_dag_files(out):
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
    from dag_factory.load.diagnose import suggest
    from dag_factory.load.specs import load_platform_cached

    for path in platforms:
        platform = load_platform_cached(path)
        known = platform.settings.environments
        if env not in known:
            hint = suggest(env, known)
            raise UsageError(f"--env {env!r} is not an environment of {platform.path} ({hint})")


def register(app: typer.Typer) -> None:
    add_commands(app, validate, schema, dags)
