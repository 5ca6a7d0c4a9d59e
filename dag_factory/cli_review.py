"""Review-loop commands: plan, diff, graph, deploy (no Airflow or papermill import at module import)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from dag_factory.loader import LoadedPlatform, LoadedSpec

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class PlanFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"
    mermaid = "mermaid"


class DiffFormat(StrEnum):
    markdown = "markdown"
    text = "text"
    json = "json"


EnvOption = Annotated[str, typer.Option(help="platform environment to plan for")]
PlatformOption = Annotated[
    Path | None,
    typer.Option(help="platform settings file; default: $DAG_FACTORY_PLATFORM or the nearest platform.yaml"),
]


def _platform(spec: Path, explicit: Path | None) -> LoadedPlatform:
    from dag_factory.loader import find_platform, load_platform

    path = explicit or find_platform(spec)
    if path is None:
        typer.echo(f"error: no platform.yaml found for {spec}; pass --platform", err=True)
        raise typer.Exit(EXIT_USAGE)
    return load_platform(path)


def _load(spec: Path, platform: LoadedPlatform) -> LoadedSpec:
    from dag_factory.loader import load_spec

    if not spec.is_file():
        typer.echo(f"error: no such spec file: {spec}", err=True)
        raise typer.Exit(EXIT_USAGE)
    return load_spec(spec, platform)


def _check_env(loaded: LoadedSpec, env: str) -> None:
    loaded.for_env(env)  # raises a located SpecError with a did-you-mean for an unknown env


def plan(
    spec: Annotated[Path, typer.Argument(help="the job spec")],
    env: EnvOption = "prod",
    output: Annotated[PlanFormat, typer.Option("--format", help="text, json, markdown or mermaid")] = (
        PlanFormat.text
    ),
    platform: PlatformOption = None,
) -> None:
    """Show the DAG a spec produces: schedule, fan-out, tasks per group, timeouts, targets, cost."""
    from dag_factory.review.describe import RENDERERS, describe

    loaded = _load(spec, _platform(spec, platform))
    _check_env(loaded, env)
    typer.echo(RENDERERS[output.value](describe(loaded, env)))


def diff(
    old: Annotated[Path, typer.Argument(help="the old spec (or the spec, with --git)")],
    new: Annotated[Path | None, typer.Argument(help="the new spec")] = None,
    git: Annotated[
        str | None, typer.Option("--git", help="compare SPEC at this git revision with SPEC")
    ] = None,
    env: EnvOption = "prod",
    output: Annotated[DiffFormat, typer.Option("--format", help="markdown (PR comment), text or json")] = (
        DiffFormat.markdown
    ),
    platform: PlatformOption = None,
) -> None:
    """What a spec change does to the generated DAG: groups, tasks, instance types, schedule, cost."""
    import json

    from dag_factory.review.diff import RENDERERS, as_json, diff_specs, spec_at_revision

    if (new is None) == (git is None):
        typer.echo("error: give two specs (diff OLD NEW) or one spec and --git REV", err=True)
        raise typer.Exit(EXIT_USAGE)
    if git is not None:
        settings = _platform(old, platform)
        after = _load(old, settings)
        before = spec_at_revision(old, git, settings)
        labels = (f"{old}@{git}", f"{old} (working tree)")
    else:
        assert new is not None
        before = _load(old, _platform(old, platform))
        after = _load(new, _platform(new, platform))
        labels = (str(old), str(new))
    _check_env(before, env)
    _check_env(after, env)
    result = diff_specs(before, after, env, *labels)
    if output is DiffFormat.json:
        typer.echo(json.dumps(as_json(result), indent=2))
    else:
        typer.echo(RENDERERS[output.value](result))


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

    loaded = _load(spec, _platform(spec, platform))
    _check_env(loaded, env)
    written = draw(loaded, env, out)
    typer.echo(f"wrote {written}")


def deploy(
    target: Annotated[Path, typer.Argument(help="the job spec, or a project folder holding one spec")],
    env: Annotated[str, typer.Option(help="platform environment to deploy to")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list what would change, change nothing")
    ] = False,
    platform: PlatformOption = None,
) -> None:
    """Validate (spec + notebook contract), then sync the project to the environment's code bucket."""
    from dag_factory.review.deploy import deploy_project, find_spec, render_sync
    from dag_factory.validate import PlatformCache, render_text, validate_file

    spec = find_spec(target)
    result = validate_file(spec, PlatformCache(platform), notebooks=True)
    if not result.valid:
        typer.echo(render_text([result]))
        typer.echo("not deployed: fix the problems above first", err=True)
        raise typer.Exit(EXIT_INVALID)
    loaded = _load(spec, _platform(spec, platform))
    _check_env(loaded, env)
    sync = deploy_project(loaded, env, dry_run=dry_run)
    typer.echo(render_sync(sync, dry_run))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `dag-factory` app."""
    app.command()(plan)
    app.command()(diff)
    app.command()(graph)
    app.command()(deploy)
