"""Notebook contract cases: each folder here is a project (spec.yaml + notebooks/) and one test.

<case>/expected.txt is the exact output of `dag-factory validate tests/validate/contract/<case>/spec.yaml`
(run from the repo root; the platform is tests/validate/contract/platform.yaml, the nearest one). Regenerate
after an intended change of wording with REGENERATE_GOLDEN=1, then review the diff.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dag_factory.cli.app import app
from dag_factory.settings import PLATFORM as PLATFORM_ENV_VAR
from tests.golden import check_golden
from tests.paths import REPO

HERE = Path(__file__).resolve().parent / "contract"
CASES = sorted(p for p in HERE.iterdir() if (p / "spec.yaml").is_file())


@pytest.fixture(autouse=True)
def _isolated(repo_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Repo-relative paths; a fresh inspection cache, so papermill really reads every notebook."""
    monkeypatch.setenv("DAG_FACTORY_CACHE_DIR", str(tmp_path / "cache"))


def _validate(spec: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["validate", *args, str(spec.relative_to(REPO))])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_contract_case(case: Path) -> None:
    code, output = _validate(case / "spec.yaml")
    check_golden(output, case / "expected.txt")
    # warnings never fail validation: a case is valid exactly when its summary says so
    assert code == (0 if "all valid" in output.splitlines()[-1] else 1)


def test_enough_cases() -> None:
    wanted = {
        "valid",
        "missing_parameters_cell",
        "two_parameters_cells",
        "typo_parameter",
        "missing_required",
        "type_mismatch",
        "kernel_mismatch",
        "unknown_kernel",
        "missing_notebook",
        "corrupt_json",
        "invalid_nbformat",
        "override_typo",
        # issue 15: real notebooks
        "r_notebook",  # msg <- "hi" / n = 10L, valid
        "r_undeclared",  # an undeclared m: did you mean 'msg'?
        "julia_notebook",
        "python_parser",  # `>=` in a comment, `=` in a string
        "multi_line_call",  # a keyword argument of a call is not a parameter
        "cell_does_not_compile",
        "not_nbformat_v4",
        "yaml_number",  # 6.02e23 is a string in YAML 1.1: load says write 6.02e+23
        "yaml_number_quoted",  # "6.02e23" for a float: the contract says write 6.02e+23
        "unread_line",  # a warning, not a false error
        "sys_exit",
        "uninjectable_value",  # bash has no dicts
    }
    assert wanted <= {p.name for p in CASES}
    valid = {p.name for p in CASES if (p / "expected.txt").read_text().splitlines()[-1].endswith("all valid")}
    warned = {p.name for p in CASES if "warning(s)" in (p / "expected.txt").read_text()}
    assert {"valid", "r_notebook", "python_parser"} <= valid
    assert {"unread_line", "sys_exit"} <= warned


def test_no_notebooks_skips_the_contract() -> None:
    code, output = _validate(HERE / "typo_parameter" / "spec.yaml", "--no-notebooks")
    assert code == 0, output


def test_json_output_carries_the_contract_problems() -> None:
    import json

    code, output = _validate(HERE / "typo_parameter" / "spec.yaml", "--format", "json")
    assert code == 1
    [file] = json.loads(output)["files"]
    assert {d["loc"] for d in file["diagnostics"]} == {
        "parameters.lookback_day",
        "fan_out.parameters.fr.n_customer",
        "notebooks[1].parameters.max_dept",
    }


def test_a_cached_inspection_does_not_import_papermill(tmp_path: Path) -> None:
    """The second validate of unchanged notebooks reads the cache: no papermill, no nbformat import."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from dag_factory.validate.check import validate_paths

        [result] = validate_paths([Path("project_configs/churn-model.yaml")])
        assert result.valid, result.diagnostics
        print(sorted(m for m in ("papermill", "nbformat") if m in sys.modules))
        """
    )
    env = {**os.environ, "DAG_FACTORY_CACHE_DIR": str(tmp_path / "cache")}
    env.pop(PLATFORM_ENV_VAR, None)
    runs = [
        subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stdout + run.stderr
    assert runs[0].stdout.strip() == "['nbformat', 'papermill']"
    assert runs[1].stdout.strip() == "[]"


def test_papermill_alone_gets_the_python_cases_wrong() -> None:
    """Why Python cells are read with `ast`: papermill's own inspection drops `threshold` (two '='
    on its line) and `query`, and takes `backoff` (a keyword argument) for a parameter."""
    import nbformat
    from papermill.inspection import _infer_parameters

    def papermill_names(case: str, notebook: str) -> set[str]:
        nb = nbformat.read(HERE / case / "notebooks" / notebook, as_version=4)
        nb.cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        return {p.name for p in _infer_parameters(nb)}

    assert papermill_names("python_parser", "01_select.ipynb") == {"limit"}
    assert "backoff" in papermill_names("multi_line_call", "01_fetch.ipynb")


def test_validate_prints_nothing_on_stderr(tmp_path: Path) -> None:
    """papermill's own log lines ("Unable to parse line 3 ...") do not leak into validate's output."""
    env = {**os.environ, "DAG_FACTORY_CACHE_DIR": str(tmp_path / "cache")}
    env.pop(PLATFORM_ENV_VAR, None)
    specs = [str((HERE / case / "spec.yaml").relative_to(REPO)) for case in ("python_parser", "sys_exit")]
    run = subprocess.run(
        [sys.executable, "-m", "dag_factory.cli.app", "validate", *specs],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stderr == ""
    assert run.stdout.splitlines()[-1] == "2 file(s) checked: all valid, 1 warning(s)"


def test_warnings_in_json_and_github_formats() -> None:
    import json

    spec = HERE / "sys_exit" / "spec.yaml"
    code, output = _validate(spec, "--format", "json")
    assert code == 0
    payload = json.loads(output)
    assert payload["valid"] is True
    [diagnostic] = payload["files"][0]["diagnostics"]
    assert (diagnostic["severity"], diagnostic["loc"]) == ("warning", "notebooks[0].path")
    code, output = _validate(spec, "--format", "github")
    assert code == 0
    first, last = output.splitlines()
    assert first.startswith(f"::warning file={spec.relative_to(REPO)},line=12,col=11,title=dag-factory::")
    assert last == "1 file(s) checked: all valid, 1 warning(s)"
