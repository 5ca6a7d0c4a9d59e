"""A failed notebook explained in the data scientist's terms, from notebooks papermill really executed
(tests/plan/executed/: a Python error, an R error, an exception without a message)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dag_factory.plan.notebook_failure import (
    MARKER,
    explain_notebook_error,
    explain_program,
    source_cell_number,
)

EXECUTED = Path(__file__).resolve().parent / "executed"
VENV_BIN = Path(sys.executable).parent


def _installed(folder: Path) -> str:
    """The program written where the guard's tools go on a host; its path."""
    program = folder / "explain_notebook_error.py"
    program.write_text(explain_program(), encoding="utf-8")
    return str(program)


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXECUTED / name).read_text())
    return loaded


EXPLAINED = {
    # papermill's output adds an error banner and the injected cell: the failing cell is the 3rd of
    # the source notebook (markdown, parameters, code), not the 6th; its first frame is line 4
    "python_error.ipynb": "cell 3 (papermill's \"Executing Cell 4\"), "
    "line 4 `f(0)`: ZeroDivisionError: division by zero",
    # IRkernel names the line when R kept the source reference ("# at line 2 of file <text>") ...
    "r_error_at_line.ipynb": 'cell 4 (papermill\'s "Executing Cell 5"), '
        'line 2 `stop("no data for ", country)`: '
    "Error in eval(expr, envir, enclos): no data for fr",
    # ... else the call in its traceback is found in the cell
    "r_error.ipynb": 'cell 2 (papermill\'s "Executing Cell 3"), '
        'line 2 `stop("boom here")`: Error in eval(expr, envir, enclos): boom here',
    # `raise ValueError()`: no message, so the exception type and the line
    "empty_message.ipynb": "cell 5 (papermill's \"Executing Cell 6\"), "
    "line 2 `raise ValueError()`: ValueError",
}


@pytest.mark.parametrize("name", sorted(EXPLAINED))
def test_explained_from_the_executed_notebook(name: str) -> None:
    assert explain_notebook_error(_load(name)) == EXPLAINED[name]


def test_a_notebook_without_an_error_explains_nothing() -> None:
    notebook = _load("python_error.ipynb")
    for cell in notebook["cells"]:
        cell["outputs"] = [o for o in cell.get("outputs", []) if o["output_type"] != "error"]
    assert explain_notebook_error(notebook) == ""


def test_source_cell_numbers_skip_the_cells_papermill_added() -> None:
    notebook = _load("python_error.ipynb")  # banner, markdown, parameters, injected, banner, code
    assert [source_cell_number(notebook, i) for i in range(6)] == [0, 1, 2, 2, 2, 3]


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(EXPLAINED))
def test_the_helper_prints_the_same_on_the_instance(name: str, tmp_path: Path) -> None:
    """What runs after papermill fails on an instance: a python with papermill, no dag_factory."""
    command = ["python", _installed(tmp_path), str(EXECUTED / name), "notebooks/my notebook.ipynb"]
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path)}  # no PYTHONPATH: no dag_factory
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{MARKER} in notebooks/my notebook.ipynb {EXPLAINED[name]}\n"


def test_the_helper_needs_only_the_standard_library_and_papermill() -> None:
    """dag_factory is not installed on an instance: the shipped program imports nothing else."""
    import ast

    program = ast.parse(explain_program())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(program)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names) | {"papermill"}, imported
    assert "papermill" in imported


def test_the_helper_is_quiet_without_an_executed_notebook(tmp_path: Path) -> None:
    command = [sys.executable, _installed(tmp_path), str(tmp_path / "never-written.ipynb"), "nb.ipynb"]
    run = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
    assert (run.returncode, run.stdout) == (0, "")
