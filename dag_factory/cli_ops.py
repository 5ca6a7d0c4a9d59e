"""Operations commands: gc (orphan sweeper). Nothing here imports Airflow."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _platform_file(given: Path | None) -> Path | None:
    """--platform, else $DAG_FACTORY_PLATFORM, else platform.yaml or project_configs/platform.yaml
    in the current folder or above."""
    from dag_factory.loader import PLATFORM_ENV_VAR, PLATFORM_FILE

    if given is not None:
        return given
    configured = os.environ.get(PLATFORM_ENV_VAR)
    if configured:
        return Path(configured)
    for folder in [Path.cwd(), *Path.cwd().parents]:
        for candidate in (folder / PLATFORM_FILE, folder / "project_configs" / PLATFORM_FILE):
            if candidate.is_file():
                return candidate
    return None


def _usage_error(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


def gc(
    env: Annotated[str, typer.Option(help="a sagemaker environment of the platform file")],
    older_than: Annotated[
        str, typer.Option(help="only instances created longer ago than this, e.g. 6h, 90m, 1d")
    ] = "6h",
    platform: Annotated[
        Path | None,
        typer.Option(help="platform settings file; default: $DAG_FACTORY_PLATFORM or the nearest one"),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="only list what would be deleted")] = False,
) -> None:
    """Stop and delete notebook instances the factory created (tag dag-factory=true) that outlived
    their run, e.g. after a worker was killed before its teardown ran. Untagged instances and
    instances younger than --older-than are never touched. Exit 0 ok, 1 a deletion failed, 2 usage."""
    from dag_factory.diagnose import suggest
    from dag_factory.errors import DagFactoryError
    from dag_factory.gc import sagemaker_client, sweep
    from dag_factory.loader import load_platform
    from dag_factory.spec.platform import SageMakerEnvironment
    from dag_factory.spec.types import parse_duration

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise _usage_error(f"--older-than: {exc}") from None
    path = _platform_file(platform)
    if path is None:
        raise _usage_error("no platform.yaml found; pass --platform or set $DAG_FACTORY_PLATFORM")
    try:
        settings = load_platform(path).settings
    except DagFactoryError as exc:
        raise _usage_error(str(exc)) from None
    environment = settings.environments.get(env)
    if environment is None:
        raise _usage_error(f"unknown environment {env!r} in {path} ({suggest(env, settings.environments)})")
    if not isinstance(environment, SageMakerEnvironment):
        raise _usage_error(f"environment {env!r} runs on {environment.backend}: it has no notebook instances")

    results = sweep(sagemaker_client(environment.region), age, dry_run=dry_run)
    for result in results:
        line = f"{result.action}: {result.orphan.describe()}"
        typer.echo(line + (f": {result.error}" if result.error else ""), err=result.action == "failed")
    failed = sum(r.action == "failed" for r in results)
    verb = "would delete" if dry_run else "removed"
    done = sum(r.action != "failed" for r in results)
    typer.echo(
        f"{len(results)} orphaned instance(s) older than {older_than} in {env} "
        f"({environment.region}): {done} {verb}, {failed} failed"
    )
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `dag-factory` app."""
    app.command(name="gc")(gc)
