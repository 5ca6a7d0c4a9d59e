"""Review commands: plan, diff, graph (no Airflow or papermill import)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dag_factory.cli.options import (
    PlatformOption,
    SpecArgument,
    add_commands,
    argument,
    format_option,
    load_platform_for,
    load_spec_file,
    output_option,
)
from dag_factory.errors import UsageError
from dag_factory.review import DIFF_FORMATS, PLAN_FORMATS

EnvOption = Annotated[str, typer.Option(metavar="ENV", help="platform environment")]


def plan(
    spec: SpecArgument,
    env: EnvOption = "prod",
    output: Annotated[str, format_option(PLAN_FORMATS, "output")] = "text",
    platform: PlatformOption = None,
) -> None:
    """Show the DAG a spec produces.

    Schedule, fan-out, tasks per group, timeouts, delivery targets and the most it can cost.
    """
    from dag_factory.review.plan_view import RENDERERS, describe

    loaded = load_spec_file(spec, platform, env)
    typer.echo(RENDERERS[output](describe(loaded, env)))


def diff(
    old: Annotated[Path, argument("OLD", "the old spec (with --git: the spec)")],
    new: Annotated[Path | None, argument("NEW", "the new spec")] = None,
    git: Annotated[
        str | None, typer.Option("--git", metavar="REV", help="compare OLD at this git revision with OLD")
    ] = None,
    env: EnvOption = "prod",
    output: Annotated[str, format_option(DIFF_FORMATS, "output (markdown: a PR comment)")] = "markdown",
    platform: PlatformOption = None,
) -> None:
    """Show what a spec change does to its DAG.

    Groups, tasks, instance types, schedule and cost, before and after: two specs, or one and --git.
    """
    from dag_factory.review.diff import RENDERERS, diff_specs, spec_at_revision

    if (new is None) == (git is None):
        raise UsageError("give two specs (diff OLD NEW) or one spec and --git REV")
    if git is not None:
        after = load_spec_file(old, platform, env)
        before = spec_at_revision(old, git, load_platform_for(old, platform))
        labels = (f"{old}@{git}", f"{old} (working tree)")
    else:
        assert new is not None
        before = load_spec_file(old, platform, env)
        after = load_spec_file(new, platform, env)
        labels = (str(old), str(new))
    before.for_env(env)
    typer.echo(RENDERERS[output](diff_specs(before, after, env, *labels)))


def graph(
    spec: SpecArgument,
    output: Annotated[Path, output_option("picture to write: .svg, .png, .pdf or .dot")] = Path("dag.svg"),
    env: EnvOption = "prod",
    platform: PlatformOption = None,
) -> None:
    """Draw the DAG a spec produces.

    One row per group, the teardown as a legend (graphviz).
    """
    from dag_factory.review.graph import draw

    loaded = load_spec_file(spec, platform, env)
    typer.echo(f"wrote {draw(loaded, env, output)}")


def register(app: typer.Typer) -> None:
    add_commands(app, plan, diff, graph)
