"""Tiny notebooks that tests write: a tagged parameters cell and one code cell, Python 3 kernel."""

from __future__ import annotations

import nbformat


def code_notebook(parameters: str, code: str) -> str:
    """The JSON of a notebook whose first cell (tagged ``parameters``) is ``parameters``, then ``code``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(code)]
    return str(nbformat.writes(nb))
