"""Review commands: plan, diff, graph (no Airflow or papermill import)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dag_factory.cli.options import (
    PlatformOption,
    add_commands,
    format_option,
    load_platform_for,
    load_spec_file,
)
from dag_factory.errors import UsageError
from dag_factory.review.describe import RENDERERS as PLAN_RENDERERS
from dag_factory.review.diff import RENDERERS as DIFF_RENDERERS

EnvOption = Annotated[str, typer.Option(help="platform environment to plan for")]


def plan(
    spec: Annotated[Path, typer.Argument(help="the job spec")],
    env: EnvOption = "prod",
    output: Annotated[str, format_option(PLAN_RENDERERS, "output")] = "text",
    platform: PlatformOption = None,
) -> None:
    """Show the DAG a spec produces: schedule, fan-out, tasks per group, timeouts, targets, cost."""
    from dag_factory.review.describe import describe

    loaded = load_spec_file(spec, platform)
    loaded.for_env(env)  # an unknown env: a located error with a did-you-mean
    typer.echo(PLAN_RENDERERS[output](describe(loaded, env)))


def diff(
    old: Annotated[Path, typer.Argument(help="the old spec (or the spec, with --git)")],
    new: Annotated[Path | None, typer.Argument(help="the new spec")] = None,
    git: Annotated[
        str | None, typer.Option("--git", help="compare SPEC at this git revision with SPEC")
    ] = None,
    env: EnvOption = "prod",
    output: Annotated[str, format_option(DIFF_RENDERERS, "output (markdown: a PR comment)")] = "markdown",
    platform: PlatformOption = None,
) -> None:
    """What a spec change does to the generated DAG: groups, tasks, instance types, schedule, cost."""
    from dag_factory.review.diff import diff_specs, spec_at_revision

    if (new is None) == (git is None):
        raise UsageError("give two specs (diff OLD NEW) or one spec and --git REV")
    if git is not None:
        after = load_spec_file(old, platform)
        before = spec_at_revision(old, git, load_platform_for(old, platform))
        labels = (f"{old}@{git}", f"{old} (working tree)")
    else:
        assert new is not None
        before = load_spec_file(old, platform)
        after = load_spec_file(new, platform)
        labels = (str(old), str(new))
    before.for_env(env)
    after.for_env(env)
    typer.echo(DIFF_RENDERERS[output](diff_specs(before, after, env, *labels)))


def graph(
    spec: Annotated[Path, typer.Argument(help="the job spec")],
    out: Annotated[
        Path, typer.Option("-o", "--out", help="picture to write: .svg, .png, .pdf or .dot")
    ] = Path("dag.svg"),
    env: EnvOption = "prod",
    platform: PlatformOption = None,
) -> None:
    """Draw the generated DAG with graphviz: one row per group, teardown as a legend."""
    from dag_factory.review.graph import draw

    loaded = load_spec_file(spec, platform)
    loaded.for_env(env)
    typer.echo(f"wrote {draw(loaded, env, out)}")


def register(app: typer.Typer) -> None:
    add_commands(app, plan, diff, graph)
