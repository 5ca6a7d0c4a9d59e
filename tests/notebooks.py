"""The notebooks tests write: code cells after an optional cell tagged ``parameters``, Python 3 kernel
unless told otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import nbformat

PYTHON3 = {"name": "python3", "display_name": "Python 3", "language": "python"}


def notebook(
    *cells: str,
    parameters: str | None = None,
    kernelspec: Mapping[str, str] = PYTHON3,
    heading: str | None = None,
) -> nbformat.NotebookNode:
    """A notebook of code ``cells``: first a markdown ``heading`` and a cell tagged ``parameters``
    holding ``parameters``, each when given."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(kernelspec)
    if heading is not None:
        nb.cells.append(nbformat.v4.new_markdown_cell(heading))
    if parameters is not None:
        params = nbformat.v4.new_code_cell(parameters)
        params.metadata["tags"] = ["parameters"]
        nb.cells.append(params)
    nb.cells.extend(nbformat.v4.new_code_cell(code) for code in cells)
    return nb


def notebook_json(*cells: str, parameters: str | None = None, kernelspec: Mapping[str, str] = PYTHON3) -> str:
    """The text of ``notebook(...)``, as an .ipynb file holds it."""
    return str(nbformat.writes(notebook(*cells, parameters=parameters, kernelspec=kernelspec)))


def write_notebook(
    path: Path, *cells: str, parameters: str | None = None, kernelspec: Mapping[str, str] = PYTHON3
) -> Path:
    """``notebook(...)`` written to ``path``; the path."""
    nbformat.write(notebook(*cells, parameters=parameters, kernelspec=kernelspec), path)
    return path
