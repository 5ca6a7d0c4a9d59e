"""`dag-factory init`: golden specs for case folders, and the spec passes `validate` as written.

Each folder in cases/ is a case: `project.txt` names a project folder of the repository, or
`project/` is the project itself; `expected.yaml` is the exact spec `init --yes` writes for it (the
project copied to <tmp>/<case>, so the project is named after the case). `make golden` regenerates.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dag_factory.cli.app import app
from dag_factory.settings import PLATFORM as PLATFORM_ENV_VAR
from tests.golden import check_golden
from tests.paths import REPO

HERE = Path(__file__).resolve().parent / "cases"
PLATFORM = REPO / "project_configs" / "platform.yaml"
CASES = sorted(p for p in HERE.iterdir() if p.is_dir())
FIXED = ["--owner", "ds-team", "--start-date", "2026-01-05"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(PLATFORM_ENV_VAR, raising=False)
    monkeypatch.setenv("DAG_FACTORY_CACHE_DIR", str(tmp_path / "cache"))


def _project(case: Path, tmp_path: Path) -> Path:
    source = (
        REPO / (case / "project.txt").read_text().strip()
        if (case / "project.txt").exists()
        else case / "project"
    )
    target = tmp_path / case.name
    shutil.copytree(source, target)
    return target


def _cli(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_init_writes_the_golden_spec_and_it_validates(case: Path, tmp_path: Path) -> None:
    project = _project(case, tmp_path)
    spec = project / f"{case.name}.yaml"
    code, output = _cli("init", str(project), "--yes", *FIXED)
    assert (code, output) == (
        0,
        f"wrote {spec} ({len(_notebooks(spec))} notebook(s)); check it: dag-factory validate {spec}\n",
    )
    check_golden(spec.read_text(), case / "expected.yaml")
    code, output = _cli("validate", str(spec), "--platform", str(PLATFORM))  # notebook contract included
    assert (code, output) == (0, "1 file(s) checked: all valid\n")


def _notebooks(spec: Path) -> list[str]:
    import yaml

    return [nb["path"] for nb in yaml.safe_load(spec.read_text())["notebooks"]]


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    project = _project(HERE / "mixed-defaults", tmp_path)
    spec = project / "mixed-defaults.yaml"
    spec.write_text("# mine\n")
    code, output = _cli("init", str(project), "--yes", *FIXED)
    assert (code, output) == (2, f"error: {spec} exists: pass --force to overwrite it\n")
    assert spec.read_text() == "# mine\n"
    code, _ = _cli("init", str(project), "--yes", "--force", *FIXED)
    assert code == 0
    assert spec.read_text() == (HERE / "mixed-defaults" / "expected.yaml").read_text()


def test_init_asks_for_the_order_until_it_is_valid(tmp_path: Path) -> None:
    project = _project(HERE / "mixed-defaults", tmp_path)
    out = tmp_path / "project_configs" / "job.yaml"  # the repository: the folder holding project_configs/
    code, output = _cli("init", str(project), "-o", str(out), *FIXED, input="n\n4\n3,1,3\n3,1\n")
    assert code == 0, output
    assert output.splitlines()[:4] == [
        "notebooks, in file order:",
        "  1. notebooks/02_clean.ipynb",
        "  2. notebooks/10_load.ipynb",
        "  3. reports/summary.ipynb",
    ]
    assert "'4': give numbers from 1 to 3, e.g. 2,1" in output
    assert "'3,1,3': each notebook runs once; name each number once" in output
    assert _notebooks(out) == ["reports/summary.ipynb", "notebooks/02_clean.ipynb"]
    assert "project_dir: ../mixed-defaults\n" in out.read_text()  # the spec lives elsewhere
    code, output = _cli("validate", str(out), "--platform", str(PLATFORM))
    assert (code, output) == (0, "1 file(s) checked: all valid\n")


def test_init_accepts_the_file_order(tmp_path: Path) -> None:
    project = _project(HERE / "mixed-defaults", tmp_path)
    code, _ = _cli("init", str(project), *FIXED, input="y\n")
    assert code == 0
    assert (project / "mixed-defaults.yaml").read_text() == (
        HERE / "mixed-defaults" / "expected.yaml"
    ).read_text()


def test_init_without_a_terminal_says_to_pass_yes(tmp_path: Path) -> None:
    """No answer can come (a pipe, CI): a usage error naming the flag, not click's bare "Aborted."."""
    project = _project(HERE / "mixed-defaults", tmp_path)
    code, output = _cli("init", str(project), *FIXED, input="")
    assert code == 2
    assert (
        "error: init asks for the notebooks' order and got no answer (no terminal): pass --yes to take them "
        "in file order"
    ) in output.splitlines()
    assert not (project / "mixed-defaults.yaml").exists()


def test_init_without_notebooks_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, output = _cli("init", str(tmp_path / "empty"), "--yes", *FIXED)
    assert (code, output) == (1, f"{tmp_path / 'empty'}: no notebooks (*.ipynb) in this folder or below\n")


def test_init_names_an_unreadable_notebook(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.ipynb").write_text("{not json")
    code, output = _cli("init", str(tmp_path / "broken"), "--yes", *FIXED)
    assert code == 1
    assert output.startswith(f"{tmp_path / 'broken' / 'a.ipynb'}: ")
