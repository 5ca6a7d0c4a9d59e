"""One exit-code policy for every command: 0 ok, 1 invalid input, 2 usage, 3 internal error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dag_factory.cli.app import app
from dag_factory.errors import EXIT_INTERNAL, EXIT_INVALID, EXIT_USAGE
from tests.paths import REPO

SPEC = REPO / "project_configs" / "churn-model.yaml"


@pytest.fixture
def bad_platform(tmp_path: Path) -> Path:
    path = tmp_path / "platform.yaml"
    path.write_text("version: 1\nenvironments:\n  prod:\n    backend: sagemaker\n")
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["gc", "--env", "prod"],
        ["plan", str(SPEC), "--env", "prod"],
        ["diff", str(SPEC), str(SPEC), "--env", "prod"],
        ["graph", str(SPEC), "--env", "prod"],
        ["deploy", str(SPEC), "--env", "prod", "--dry-run"],
    ],
)
def test_a_bad_platform_file_is_invalid_input_for_every_command(args: list[str], bad_platform: Path) -> None:
    result = CliRunner().invoke(app, [*args, "--platform", str(bad_platform)])
    assert result.exit_code == EXIT_INVALID, result.output
    assert str(bad_platform) in result.output  # the diagnostics name the file


def test_no_platform_file_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAG_FACTORY_PLATFORM", raising=False)
    (tmp_path / "spec.yaml").write_text(SPEC.read_text())
    for args in (["gc", "--env", "prod"], ["plan", "spec.yaml"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == EXIT_USAGE, result.output
        assert "no platform.yaml found" in result.output


def test_an_internal_error_exits_3_without_a_traceback() -> None:
    script = (
        "import dag_factory.cli.spec as spec\n"
        "def boom(*args, **kwargs): raise KeyError('x')\n"
        "spec.validate_paths = boom\n"
        "import dag_factory.validate.check as check\n"
        "check.validate_paths = boom\n"
        "from dag_factory.cli.app import main\n"
        "import sys; sys.argv = ['dag-factory', 'validate', 'project_configs']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == EXIT_INTERNAL, done.stderr
    assert done.stderr.startswith("internal error: KeyError: 'x' (a bug in dag-factory")
    assert "Traceback" not in done.stderr


PLATFORM = REPO / "project_configs" / "platform.yaml"
DEMO = REPO / "project_configs" / "churn-demo.yaml"


@pytest.mark.parametrize(
    "args",
    [
        ["plan", str(SPEC)],
        ["diff", str(SPEC), str(SPEC)],
        ["graph", str(SPEC)],
        ["deploy", str(SPEC), "--dry-run"],
        ["dags", str(SPEC), "-o", "unused"],
        ["gc"],
        ["run", str(DEMO), "--no-notebooks"],
    ],
    ids=lambda args: args[0],
)
def test_an_unknown_environment_is_a_usage_error_for_every_command(args: list[str]) -> None:
    """One meaning, one exit code: a command line naming an environment the platform file lacks."""
    result = CliRunner().invoke(app, [*args, "--env", "prood", "--platform", str(PLATFORM)])
    assert result.exit_code == EXIT_USAGE, result.output
    assert (
        result.output == f"error: --env 'prood' is not an environment of {PLATFORM} (did you mean 'prod'?)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", str(DEMO), "--no-notebooks", "--only", "dee"], "error: --only 'dee' is not a fan-out value"),
        (
            ["run", str(DEMO), "--no-notebooks", "--date", "5.1.2026"],
            "error: --date '5.1.2026' is not YYYY-MM-DD",
        ),
        (["init", "no-such-folder"], "error: no-such-folder: no such folder"),
        (["schema", "-o", "/proc/no-such/folder"], "error: --output /proc/no-such/folder: "),
        (["plan", "no-such.yaml"], "error: no such spec file: no-such.yaml"),
        (["validate", "--no-such-option", "x"], "No such option: --no-such-option"),
    ],
    ids=lambda x: str(x)[:40],
)
def test_what_the_command_line_gets_wrong_exits_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in result.output


def test_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert (result.exit_code, result.output) == (0, f"dag-factory {version('dag-factory-notebooks')}\n")
