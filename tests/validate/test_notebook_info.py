"""Reading a notebook's parameters cell: papermill's inspection plus annotation-only declarations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dag_factory.validate.notebook_info import Declared, inspect_notebook


def _notebook(tmp_path: Path, source: str, kernel: str = "python3") -> Path:
    cell = {
        "cell_type": "code",
        "id": "p",
        "metadata": {"tags": ["parameters"]},
        "execution_count": None,
        "outputs": [],
        "source": source,
    }
    nb = {
        "cells": [cell],
        "metadata": {"kernelspec": {"name": kernel, "display_name": kernel, "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    return path


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAG_FACTORY_CACHE_DIR", "off")


def test_annotation_only_lines_are_required_parameters(tmp_path: Path) -> None:
    path = _notebook(tmp_path, 'a = 1\nx: int  # rows\nb: str = "q"  # help\nc = [1,\n 2]\n')
    info = inspect_notebook(path)
    assert list(info.parameters) == ["a", "x", "b", "c"]
    assert info.parameters["a"] == Declared("a", "None", "1", "")
    assert info.parameters["x"] == Declared("x", "int", None, "rows")
    assert info.parameters["x"].required
    assert info.parameters["b"].default == '"q"'
    assert info.parameters["c"].default == "[1,2]"
    assert info.kernel == "python3"


@pytest.mark.parametrize(
    ("declared", "kind"),
    [
        (Declared("a", "None", "1"), "int"),
        (Declared("a", "None", "-1.5"), "float"),
        (Declared("a", "None", "True"), "bool"),
        (Declared("a", "None", "'x'"), "string"),
        (Declared("a", "None", "[1, 2]"), "list"),
        (Declared("a", "None", "{'k': 1}"), "dict"),
        (Declared("a", "None", "None"), None),
        (Declared("a", "None", "os.environ['X']"), None),
        (Declared("a", "int", "os.environ['X']"), "int"),
        (Declared("a", "list[str]", None), "list"),
        (Declared("a", "None", None), None),
    ],
)
def test_kind_of_a_declaration(declared: Declared, kind: str | None) -> None:
    assert declared.kind == kind


def test_the_cache_returns_the_same_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAG_FACTORY_CACHE_DIR", str(tmp_path / "cache"))
    path = _notebook(tmp_path, "n = 3\nm: float\n")
    first = inspect_notebook(path)
    assert list((tmp_path / "cache").rglob("*.json"))
    assert inspect_notebook(path) == first
