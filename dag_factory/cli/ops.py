"""Operations commands: deploy a project, sweep orphaned instances, check a host (no Airflow import)."""

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
    load_platform_for,
    load_spec_file,
    require_valid,
)
from dag_factory.errors import EXIT_INVALID, EXIT_OK, UsageError


def deploy(
    target: Annotated[Path, argument("SPEC_OR_DIR", "the job spec, or a project folder holding one spec")],
    env: Annotated[str, typer.Option(metavar="ENV", help="platform environment to deploy to")],
    dry_run: Annotated[bool, flag("list what would change, change nothing", "--dry-run")] = False,
    platform: PlatformOption = None,
) -> None:
    """Validate a project, then sync it to its code bucket.

    The spec and the notebook contract are checked first; nothing is synced when they fail. Each sync
    is a new code version. See docs/deploy.md.
    """
    from dag_factory.ops.deploy import deploy_project, find_spec, render_sync

    spec = find_spec(target)
    require_valid(spec, platform, "not deployed")
    loaded = load_spec_file(spec, platform, env)
    typer.echo(render_sync(deploy_project(loaded, env, dry_run=dry_run), dry_run))


def gc(
    env: Annotated[str, typer.Option(metavar="ENV", help="a sagemaker environment of the platform file")],
    older_than: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="e.g. 6h, 90m (default: each instance's max age)"),
    ] = None,
    platform: PlatformOption = None,
    dry_run: Annotated[bool, flag("only list what would be deleted", "--dry-run")] = False,
) -> None:
    """Delete notebook instances that outlived their run.

    Only this environment's instances tagged by dag-factory, past their max age, whose run Airflow says
    is over. Exit 1 when a deletion failed or Airflow could not be asked. See docs/deploy.md.
    """
    from dag_factory.ops.gc import AirflowRuns, sagemaker_client, sweep
    from dag_factory.spec.platform import SageMakerEnvironment
    from dag_factory.spec.types import parse_duration

    try:
        age = parse_duration(older_than) if older_than is not None else None
    except ValueError as exc:
        raise UsageError(f"--older-than: {exc}") from None
    loaded = load_platform_for(Path.cwd(), platform)
    environment = loaded.environment(env)
    if not isinstance(environment, SageMakerEnvironment):
        raise UsageError(f"environment {env!r} runs on {environment.backend}: it has no notebook instances")
    if not environment.airflow_url:
        raise UsageError(
            f"environment {env!r} in {loaded.path} has no airflow_url: gc asks that Airflow which runs "
            "are still live before it deletes anything (set airflow_url: https://<your api-server>)"
        )

    runs = AirflowRuns(environment.airflow_url, settings.airflow_token())
    results = sweep(sagemaker_client(environment.region), env, runs, age, dry_run=dry_run)
    for result in results:
        line = f"{result.action}: {result.orphan.describe()}"
        typer.echo(line + (f": {result.error}" if result.error else ""), err=result.action == "failed")
    failed = sum(r.action == "failed" for r in results)
    spared = sum(r.action == "spared" for r in results)
    done = len(results) - failed - spared
    verb = "would delete" if dry_run else "removed"
    limit = f"older than {older_than}" if older_than else "past their max age"
    typer.echo(
        f"{len(results) - spared} orphaned instance(s) {limit} in {env} ({environment.region}): "
        f"{done} {verb}, {failed} failed; {spared} spared (run still live)"
    )
    raise typer.Exit(EXIT_INVALID if failed else EXIT_OK)


def doctor(
    env: Annotated[
        str | None,
        typer.Option(
            metavar="ENV",
            help=f"the environment to check; default: what this host's DAGs build for (${settings.ENV})",
        ),
    ] = None,
    platform: PlatformOption = None,
    output_format: Annotated[str, format_option(("text", "json"), "output format")] = "text",
) -> None:
    """Check that this host has what an environment's DAGs need.

    Run it on a worker or the scheduler's host: the environment setting, the platform file, the Airflow
    and provider versions, the extras, the plugin, the connections (reached), the pool, the buckets,
    the AWS calls, the subnet and security groups. Exit 1 when a check failed. See docs/deploy.md.
    """
    from dag_factory.ops.doctor import diagnose, render_json, render_text

    checks = diagnose(env, platform)
    if output_format == "json":
        typer.echo(render_json(checks))
    else:
        render_text(checks)
    raise typer.Exit(EXIT_OK if all(check.ok for check in checks) else EXIT_INVALID)


def register(app: typer.Typer) -> None:
    add_commands(app, deploy, gc, doctor)
