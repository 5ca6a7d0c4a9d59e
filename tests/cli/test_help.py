"""Each command's --help, as a person reads it at 80 columns: golden files in tests/cli/help/.

Plain click layout (no boxes, flags as flags), a few lines per command; what a flag's policy is lives in
docs/, which the help names. `make golden` rewrites the files; review the diff."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from dag_factory.cli.app import app
from tests.golden import check_golden

HELP = Path(__file__).resolve().parent / "help"
COMMANDS = sorted(get_command(app).commands)  # type: ignore[attr-defined]


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], prog_name="dag-factory", terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", ["", *COMMANDS], ids=lambda c: c or "dag-factory")
def test_help_at_80_columns(command: str) -> None:
    text = _help(*([command] if command else []))
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "<bool>" not in text and "--no-keep" not in text
    check_golden(text, HELP / f"{command or 'dag-factory'}.txt")


def test_every_command_is_listed_with_a_short_line() -> None:
    listed = _help().split("Commands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split()[0] for line in listed] == list(get_command(app).commands)  # type: ignore[attr-defined]
    assert not [line for line in listed if line.endswith("...")], listed
