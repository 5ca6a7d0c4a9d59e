"""`dag-factory validate`: exit codes, the three output formats, many files at once, no Airflow import."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dag_factory.cli.app import app
from tests.paths import REPO

CASES = Path("tests/cases")
PLATFORM = "project_configs/platform.yaml"
GOOD = CASES / "valid" / "minimal.yaml"
BAD = CASES / "invalid" / "typo_schedule.yaml"
NOTEBOOKS = REPO / "examples" / "churn-demo" / "notebooks"


pytestmark = pytest.mark.usefixtures("repo_root")


def _validate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["validate", *args])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        result.exception
    )
    return result.exit_code, result.output


def test_project_configs_are_valid_without_notebooks() -> None:
    code, output = _validate("--no-notebooks", "project_configs")
    assert code == 0, output
    assert output.strip().endswith("all valid")


def test_project_configs_are_valid_with_the_notebook_contract() -> None:
    code, output = _validate("project_configs")
    assert code == 0, output


def test_invalid_file_exits_1_with_its_golden_text() -> None:
    code, output = _validate("--no-notebooks", "--platform", PLATFORM, str(BAD))
    assert code == 1
    assert output == BAD.with_suffix(".expected").read_text()


def test_missing_path_exits_2() -> None:
    code, output = _validate("--no-notebooks", "no/such/spec.yaml")
    assert code == 2
    assert "no such file or folder: no/such/spec.yaml" in output


def test_folder_without_specs_exits_2(tmp_path: Path) -> None:
    code, output = _validate(str(tmp_path))
    assert code == 2
    assert "no .yaml files" in output


@pytest.mark.parametrize(
    "args",
    [["--format", "xml", str(GOOD)], ["--bogus", str(GOOD)], []],
    ids=["bad-format", "bad-flag", "no-args"],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["validate", *args])
    assert result.exit_code == 2


def test_one_bad_file_does_not_hide_the_others() -> None:
    code, output = _validate("--no-notebooks", "--platform", PLATFORM, str(BAD), str(GOOD))
    assert code == 1
    lines = output.strip().splitlines()
    assert lines[0].startswith(f"{BAD}:4:1: scheduel:")
    assert lines[-1] == "2 file(s) checked: 1 invalid, 1 problem(s)"


def test_many_bad_files_all_reported() -> None:
    bad = [CASES / "invalid" / name for name in ("bad_cron.yaml", "tabs.yaml", "non_utf8.yaml")]
    code, output = _validate("--no-notebooks", "--platform", PLATFORM, *map(str, bad), str(GOOD))
    assert code == 1
    for path in bad:
        assert f"{path}:" in output
    assert output.strip().splitlines()[-1] == "4 file(s) checked: 3 invalid, 3 problem(s)"


def test_json_format() -> None:
    code, output = _validate(
        "--no-notebooks", "--platform", PLATFORM, "--format", "json", str(BAD), str(GOOD)
    )
    assert code == 1
    payload = json.loads(output)
    assert payload["valid"] is False
    bad, good = payload["files"]
    assert (good["path"], good["kind"], good["valid"], good["diagnostics"]) == (str(GOOD), "spec", True, [])
    assert bad["valid"] is False
    [diagnostic] = bad["diagnostics"]
    assert diagnostic == {
        "path": str(BAD),
        "line": 4,
        "col": 1,
        "loc": "scheduel",
        "message": "unknown key 'scheduel'",
        "hint": "did you mean 'schedule'?",
        "severity": "error",
    }


def test_json_format_all_valid() -> None:
    code, output = _validate("--no-notebooks", "--format", "json", "project_configs")
    assert code == 0
    payload = json.loads(output)
    assert payload["valid"] is True
    assert {f["kind"] for f in payload["files"]} == {"spec", "platform"}


def test_github_format() -> None:
    code, output = _validate(
        "--no-notebooks", "--platform", PLATFORM, "--format", "github", str(BAD), str(GOOD)
    )
    assert code == 1
    first, last = output.strip().splitlines()
    assert first == (
        f"::error file={BAD},line=4,col=1,title=dag-factory::"
        "scheduel: unknown key 'scheduel' (did you mean 'schedule'?)"
    )
    assert last == "2 file(s) checked: 1 invalid, 1 problem(s)"


def test_github_format_escapes_newlines() -> None:
    from dag_factory.errors import Diagnostic
    from dag_factory.validate.check import FileResult
    from dag_factory.validate.output import render_github

    result = FileResult("a.yaml", "spec", [Diagnostic("a.yaml", 1, 2, "x", "two\nlines 100%")])
    assert render_github([result]).splitlines()[0].endswith("::x: two%0Alines 100%25")


def test_spec_next_to_an_invalid_platform_file() -> None:
    platform = CASES / "invalid_platform" / "bad_values" / "platform.yaml"
    code, output = _validate("--no-notebooks", "--platform", str(platform), str(GOOD))
    assert code == 1
    assert f"platform file {platform} is invalid" in output


def test_platform_file_is_validated_as_a_platform() -> None:
    code, output = _validate("--no-notebooks", str(CASES / "invalid_platform" / "unknown_backend"))
    assert code == 1
    assert "unknown backend 'locale'" in output


def test_console_script_exit_codes() -> None:
    exe = REPO / ".venv" / "bin" / "dag-factory"
    ok = subprocess.run(
        [exe, "validate", "--no-notebooks", "project_configs"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run(
        [exe, "validate", "--no-notebooks", "--platform", PLATFORM, str(BAD)], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert "Traceback" not in bad.stdout + bad.stderr
    missing = subprocess.run([exe, "validate", "nope.yaml"], capture_output=True, text=True)
    assert missing.returncode == 2


def test_a_spec_without_a_platform_file_is_valid_with_a_located_warning(tmp_path: Path) -> None:
    """A data scientist's own project, outside this repository: what the spec alone says is checked; what
    a platform file decides is not, and the warning says so at the spec, with where one comes from."""
    shutil.copytree(REPO / "tests" / "validate" / "contract" / "typo_parameter", tmp_path / "project")
    spec = tmp_path / "project" / "spec.yaml"
    code, output = _validate("--no-notebooks", str(spec))
    assert code == 0, output
    assert output.splitlines() == [
        f"{spec}:1:1: warning: no platform.yaml found for this spec (nor in a project_configs/ folder above "
        "it): its environments, instance types, timeouts, buckets and connections were not checked against a "
        "platform (pass --platform FILE or set $DAG_FACTORY_PLATFORM to your data-engineering team's "
        "platform file; plan, run and dags need one)",
        "1 file(s) checked: all valid, 1 warning(s)",
    ]
