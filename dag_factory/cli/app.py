"""The `dag-factory` command: one Typer app, one module per command family, one exit-code policy.

Help is click's plain layout (flags shown as flags, nothing boxed: the same in a terminal, a pipe and
the golden files of tests/cli/help); each command's help is a few lines, the policy lives in docs/.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
from importlib import import_module
from typing import Annotated

import typer

from dag_factory import DISTRIBUTION, settings
from dag_factory.cli.options import report_error
from dag_factory.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_USAGE,
    DagFactoryError,
)

EXIT_CODES = (
    f"Exit codes: {EXIT_OK} ok; {EXIT_INVALID} invalid input (a spec, platform file or notebook) or failed "
    f"work; {EXIT_USAGE} usage error (the command line is wrong); {EXIT_INTERNAL} internal error (a bug); "
    f"{EXIT_INTERRUPTED} interrupted."
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Validate notebook job specs and build, plan and run the Airflow DAGs they describe.",
    epilog=f"{EXIT_CODES} Guide: docs/cli.md",
)


def _version(shown: bool) -> None:
    if shown:
        from importlib.metadata import version

        typer.echo(f"dag-factory {version(DISTRIBUTION)}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Validate notebook job specs and build, plan and run the Airflow DAGs they describe."""


# Each family registers its commands; none imports Airflow when the CLI starts.
COMMAND_MODULES = ("spec", "init", "run", "review", "ops")
for _name in COMMAND_MODULES:
    import_module(f"dag_factory.cli.{_name}").register(app)


def main() -> None:
    """Console entry point: our errors print as messages, never as tracebacks."""
    # `kill -USR1 <pid>` prints where every thread of a dag-factory that seems stuck is (to stderr)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        app()
    except DagFactoryError as exc:  # one raised outside a command's guard (add_commands)
        sys.exit(report_error(exc))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # an internal error: say so briefly, keep the traceback opt-in
        if settings.debug():
            raise
        typer.echo(
            f"internal error: {type(exc).__name__}: {exc} "
            f"(a bug in dag-factory; set {settings.DEBUG}=1 for the traceback and report it)",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
