"""What every command shares: options, output formats, loading a spec with its platform file."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dag_factory import settings
from dag_factory.errors import EXIT_INVALID, EXIT_USAGE, DagFactoryError, UsageError

if TYPE_CHECKING:
    from dag_factory.load.specs import LoadedPlatform, LoadedSpec

PlatformOption = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help=f"platform file; default: ${settings.PLATFORM}, else the nearest platform.yaml above the spec",
    ),
]


def argument(metavar: str, help: str) -> Any:
    return typer.Argument(metavar=metavar, help=help, show_default=False)


SpecArgument = Annotated[Path, argument("SPEC", "the job spec")]


def output_option(what: str) -> Any:
    """-o/--output: where a command writes its file (or folder) of results."""
    return typer.Option("--output", "-o", metavar="PATH", help=what)


def flag(help: str, *names: str) -> Any:
    """A flag that is off unless given: shown as the flag alone, without a default or a --no- twin."""
    return typer.Option(*names, help=help, show_default=False)


def report_error(exc: DagFactoryError) -> int:
    """Our error as a message on stderr, never a traceback, and its exit code: 2 when the command line is
    wrong (a usage error), 1 when a file it names is invalid or the work failed."""
    if isinstance(exc, UsageError):
        typer.echo(f"error: {exc}", err=True)
        return EXIT_USAGE
    typer.echo(str(exc), err=True)
    return EXIT_INVALID


def format_option(formats: Sequence[str], what: str) -> Any:
    """--format whose choices are exactly the renderers a command's result has (the first is the default)."""
    choices = list(formats)

    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return typer.Option(
        "--format",
        metavar="FORMAT",
        callback=check,
        autocompletion=lambda: choices,
        help=f"{what}: {', '.join(choices)}",
    )


def load_platform_for(near: Path, explicit: Path | None) -> LoadedPlatform:
    from dag_factory.load.files import require_platform
    from dag_factory.load.specs import load_platform

    return load_platform(require_platform(near, explicit))


def load_spec_file(spec: Path, explicit_platform: Path | None, env: str | None = None) -> LoadedSpec:
    """The spec validated against its platform file (and `env` checked against it); a missing file is a
    usage error."""
    from dag_factory.load.specs import load_spec

    if not spec.is_file():
        raise UsageError(f"no such spec file: {spec}")
    platform = load_platform_for(spec, explicit_platform)
    if env is not None:
        platform.environment(env)
    return load_spec(spec, platform)


def require_valid(spec: Path, explicit_platform: Path | None, refused: str) -> None:
    """Validate the spec and its notebook contract before acting on it (deploy, run): on problems print
    them and exit 1, saying what did not happen (`refused`); warnings go to stderr and the command
    goes on."""
    from dag_factory.validate.check import PlatformCache, validate_file
    from dag_factory.validate.output import render_text, render_warnings

    result = validate_file(spec, PlatformCache(explicit_platform), notebooks=True)
    if not result.valid:
        typer.echo(render_text([result]))
        typer.echo(f"{refused}: fix the problems above first", err=True)
        raise typer.Exit(EXIT_INVALID)
    if result.warnings:
        typer.echo(render_warnings([result]), err=True)


def add_commands(app: typer.Typer, *commands: Callable[..., None]) -> None:
    """Register commands so that our errors exit the same way however the app is invoked (the console
    script, or Typer's test runner): a usage error exits 2, any other DagFactoryError (an invalid spec
    or platform file, a failed deploy) exits 1, each with its message on stderr and no traceback."""
    for command in commands:

        @functools.wraps(command)
        def guarded(*args: Any, __command: Callable[..., None] = command, **kwargs: Any) -> None:
            try:
                __command(*args, **kwargs)
            except DagFactoryError as exc:
                raise typer.Exit(report_error(exc)) from None

        app.command()(guarded)
