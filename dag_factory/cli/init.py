"""`dag-factory init`: scaffold a job spec for a folder of notebooks."""

from __future__ import annotations

import datetime as dt
import getpass
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from dag_factory.cli.options import add_commands, argument, flag, output_option
from dag_factory.errors import UsageError


def _owner() -> str:
    """The login name, as a tag value may hold it."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        name = ""
    return re.sub(r"[^\w .:/=+@-]", "-", name, flags=re.ASCII) or "unknown-owner"


def _confirmed_order(found: list[str]) -> list[str]:
    """Ask whether to run the notebooks in file order; otherwise ask for the order until it is valid."""
    from dag_factory.scaffold.first_spec import ScaffoldError, parse_order

    typer.echo("notebooks, in file order:")
    for i, path in enumerate(found, 1):
        typer.echo(f"  {i}. {path}")
    if typer.confirm("Run them in this order?", default=True):
        return found
    while True:
        answer = typer.prompt("Order to run them in (numbers, e.g. 2,1; leave one out to skip it)")
        try:
            return parse_order(answer, found)
        except ScaffoldError as exc:
            typer.echo(str(exc), err=True)


def init(
    project_dir: Annotated[Path, argument("DIR", "folder with the notebooks (default: .)")] = Path("."),
    output: Annotated[
        Path | None, output_option("spec file to write (default: <DIR>/<project>.yaml)")
    ] = None,
    yes: Annotated[bool, flag("ask nothing: the notebooks in file order", "--yes", "-y")] = False,
    force: Annotated[bool, flag("overwrite an existing spec file", "--force")] = False,
    owner: Annotated[
        str | None, typer.Option(metavar="NAME", help="team or person (default: your login)")
    ] = None,
    start_date: Annotated[
        str | None, typer.Option(metavar="YYYY-MM-DD", help="the spec's start_date (default: today)")
    ] = None,
) -> None:
    """Write a spec for a folder of notebooks.

    It lists the notebooks in the order you confirm, with their parameters' defaults; without a
    terminal, pass --yes.
    """
    from dag_factory.scaffold.first_spec import (
        find_notebooks,
        project_name,
        render_spec,
        scaffold,
        write_spec,
    )

    try:
        start = dt.date.fromisoformat(start_date) if start_date else dt.date.today()
    except ValueError as exc:
        raise UsageError(f"--start-date {start_date!r}: use YYYY-MM-DD ({exc})") from exc
    spec_path = output or project_dir / f"{project_name(project_dir)}.yaml"
    if spec_path.exists() and not force:  # before any question
        raise UsageError(f"{spec_path} exists: pass --force to overwrite it")
    if not project_dir.is_dir():
        raise UsageError(f"{project_dir}: no such folder (pass the folder that holds the notebooks)")
    order = None
    if not yes and (found := find_notebooks(project_dir)):
        try:
            order = _confirmed_order(found)
        except typer.Abort:  # no answer came: end of input, or Ctrl-C
            if sys.stdin.isatty():
                raise
            typer.echo()  # end the question's line
            raise UsageError(
                "init asks for the notebooks' order and got no answer (no terminal): pass --yes to take "
                "them in file order"
            ) from None
    draft = scaffold(project_dir, order)
    text = render_spec(
        draft, owner=owner or _owner(), start_date=start, spec_path=spec_path, project_dir=project_dir
    )
    write_spec(text, spec_path, force)
    typer.echo(
        f"wrote {spec_path} ({len(draft.notebooks)} notebook(s)); check it: dag-factory validate {spec_path}"
    )


def register(app: typer.Typer) -> None:
    add_commands(app, init)
