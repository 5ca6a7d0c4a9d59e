"""The `dag-factory` command: one Typer app, one module per command family, one exit-code policy.

Exit codes: 0 ok, 1 invalid input or a failed run, 2 usage error, 3 internal error (a bug).
"""

from __future__ import annotations

import faulthandler
import signal
import sys
from importlib import import_module

import typer

from dag_factory import settings
from dag_factory.errors import EXIT_INTERNAL, EXIT_INVALID, EXIT_USAGE, DagFactoryError, UsageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Validate notebook job specs and build, plan and run the Airflow DAGs they describe.",
)

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
    except UsageError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except DagFactoryError as exc:
        typer.echo(str(exc), err=True)
        sys.exit(EXIT_INVALID)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
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
