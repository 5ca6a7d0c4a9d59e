"""Operations commands: deploy a project, sweep orphaned instances (no Airflow import)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dag_factory.cli.options import (
    PlatformOption,
    add_commands,
    load_platform_for,
    load_spec_file,
    require_valid,
)
from dag_factory.errors import EXIT_INVALID, EXIT_OK, UsageError


def deploy(
    target: Annotated[Path, typer.Argument(help="the job spec, or a project folder holding one spec")],
    env: Annotated[str, typer.Option(help="platform environment to deploy to")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list what would change, change nothing")
    ] = False,
    platform: PlatformOption = None,
) -> None:
    """Validate (spec + notebook contract), then sync the project to the environment's code bucket."""
    from dag_factory.ops.deploy import deploy_project, find_spec, render_sync

    spec = find_spec(target)
    require_valid(spec, platform, "not deployed")
    loaded = load_spec_file(spec, platform)
    loaded.for_env(env)
    typer.echo(render_sync(deploy_project(loaded, env, dry_run=dry_run), dry_run))


def gc(
    env: Annotated[str, typer.Option(help="a sagemaker environment of the platform file")],
    older_than: Annotated[
        str, typer.Option(help="only instances created longer ago than this, e.g. 6h, 90m, 1d")
    ] = "6h",
    platform: PlatformOption = None,
    dry_run: Annotated[bool, typer.Option(help="only list what would be deleted")] = False,
) -> None:
    """Stop and delete notebook instances the factory created (tag dag-factory=true) that outlived
    their run, e.g. after a worker was killed before its teardown ran. Untagged instances and
    instances younger than --older-than are never touched. Exit 0 ok, 1 a deletion failed or the
    platform file is invalid, 2 usage."""
    from dag_factory.load.diagnose import suggest
    from dag_factory.ops.gc import sagemaker_client, sweep
    from dag_factory.spec.platform import SageMakerEnvironment
    from dag_factory.spec.types import parse_duration

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise UsageError(f"--older-than: {exc}") from None
    loaded = load_platform_for(Path.cwd(), platform)
    environment = loaded.settings.environments.get(env)
    if environment is None:
        known = loaded.settings.environments
        raise UsageError(f"unknown environment {env!r} in {loaded.path} ({suggest(env, known)})")
    if not isinstance(environment, SageMakerEnvironment):
        raise UsageError(f"environment {env!r} runs on {environment.backend}: it has no notebook instances")

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
    raise typer.Exit(EXIT_INVALID if failed else EXIT_OK)


def register(app: typer.Typer) -> None:
    add_commands(app, deploy, gc)
