"""Reading a notebook: papermill's translator picks the language, the reader of that language the cell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dag_factory.validate.declared import Declared
from dag_factory.validate.notebook_info import (
    Note,
    NotebookUnreadable,
    declared_parameters,
    inspect_notebook,
)

LANGUAGES = {  # kernel name -> (kernelspec language, language_info name), as the kernels save them
    "python3": ("python", "python"),
    "ir": ("R", "R"),
    "julia-1.10": ("julia", "julia"),
    "bash": ("bash", "bash"),
    "csharp": ("C#", ".net-csharp"),
}


def _notebook(tmp_path: Path, source: str, kernel: str = "python3", cells: tuple[str, ...] = ()) -> Path:
    def cell(text: str, tags: list[str]) -> dict[str, Any]:
        return {
            "cell_type": "code",
            "id": f"c{len(text)}{len(tags)}",
            "metadata": {"tags": tags},
            "execution_count": None,
            "outputs": [],
            "source": text,
        }

    language, info_name = LANGUAGES[kernel]
    metadata = {
        "kernelspec": {"name": kernel, "display_name": kernel, "language": language},
        "language_info": {"name": info_name},
    }
    nb = {
        "cells": [cell(source, ["parameters"]), *(cell(c, []) for c in cells)],
        "metadata": metadata,
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    return path


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAG_FACTORY_CACHE_DIR", "off")


def test_a_python_notebook(tmp_path: Path) -> None:
    path = _notebook(tmp_path, 'a = 1\nx: int  # rows\nb: str = "q"  # help\nc = [1,\n 2]\n')
    info = inspect_notebook(path)
    assert (info.kernel, info.language, info.error) == ("python3", "python", "")
    assert list(info.parameters) == ["a", "x", "b", "c"]
    assert info.parameters["x"] == Declared("x", None, "int", "int", 2, "rows")
    assert info.parameters["c"].value == "[1, 2]"
    assert info.uninjectable == []


def test_an_r_notebook_is_read_as_r(tmp_path: Path) -> None:
    info = inspect_notebook(_notebook(tmp_path, 'msg <- "hi"\nn = 10L\n', kernel="ir"), "ir")
    assert (info.language, info.error) == ("r", "")
    assert [(p.name, p.kind) for p in info.parameters.values()] == [("msg", "string"), ("n", "int")]


def test_the_translator_follows_the_kernel_of_the_run_then_the_language(tmp_path: Path) -> None:
    """papermill looks up its translator by the -k kernel name first: `bash` is a registered name."""
    path = _notebook(tmp_path, "n=1\n", kernel="bash")
    assert inspect_notebook(path, "bash").language == "bash"
    assert inspect_notebook(path, "some-bash-env").language == "bash"  # by the language


def test_kinds_a_translator_cannot_write(tmp_path: Path) -> None:
    assert inspect_notebook(_notebook(tmp_path, "n=1\n", kernel="bash")).uninjectable == ["dict"]
    assert inspect_notebook(_notebook(tmp_path, "var n = 1;\n", kernel="csharp")).uninjectable == ["null"]


def test_a_notebook_without_a_language_is_an_error(tmp_path: Path) -> None:
    path = _notebook(tmp_path, "n = 1\n")
    nb = json.loads(path.read_text())
    del nb["metadata"]["kernelspec"]["language"], nb["metadata"]["language_info"]
    path.write_text(json.dumps(nb))
    info = inspect_notebook(path)
    assert info.error == "records no language (metadata language_info.name or kernelspec.language)"


def test_a_top_level_sys_exit_is_noted_in_any_cell(tmp_path: Path) -> None:
    path = _notebook(tmp_path, "n = 1\n", cells=("print(n)", "import sys\nsys.exit(0)\n"))
    [note] = inspect_notebook(path).notes
    assert (note.cell, note.line) == (3, 2)
    assert note.message.startswith("sys.exit(0) stops papermill at this cell and the run reports success")


def test_unread_statements_become_notes(tmp_path: Path) -> None:
    info = inspect_notebook(_notebook(tmp_path, "n <- 1\nx[1] <- 2\n", kernel="ir"))
    assert info.unread
    assert info.notes == [
        Note(
            1,
            2,
            "parameters cell not read here (not a simple assignment): x[1] <- 2",
            "write each parameter as a plain top-level assignment, name = value; "
            "the contract cannot check what it cannot read",
        )
    ]


def test_the_cache_returns_the_same_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAG_FACTORY_CACHE_DIR", str(tmp_path / "cache"))
    path = _notebook(tmp_path, "n = 3\nm: float\n", cells=("import sys\nsys.exit()",))
    first = inspect_notebook(path)
    assert list((tmp_path / "cache").rglob("*.json"))
    assert inspect_notebook(path) == first
    assert first.notes and first.parameters


def test_declared_parameters_for_scaffolding(tmp_path: Path) -> None:
    """The public reader `dag-factory init` builds on: name, default as written, type, line."""
    path = _notebook(tmp_path, "# defaults\nthreshold = 0.5  # score >= threshold\nn: int\n")
    assert [(p.name, p.default, p.kind, p.line) for p in declared_parameters(path)] == [
        ("threshold", "0.5", "float", 2),
        ("n", None, "int", 3),
    ]
    broken = _notebook(tmp_path, "x = (\n")
    with pytest.raises(NotebookUnreadable, match=r"nb.ipynb: has a parameters cell \(cell 1\) that does not"):
        declared_parameters(broken)
