"""Notebook contract: what the spec passes must match what each notebook declares."""

from __future__ import annotations

from dag_factory.errors import Diagnostic
from dag_factory.loader import LoadedSpec


def check_contract(loaded: LoadedSpec) -> list[Diagnostic]:
    """Every notebook the spec names exists in the project folder."""
    problems = []
    for i, notebook in enumerate(loaded.spec.notebooks):
        if not (loaded.project_dir / notebook.path).is_file():
            mark = loaded.doc.positions.of_value(("notebooks", i, "path"))
            problems.append(
                Diagnostic(
                    str(loaded.path),
                    mark.line,
                    mark.col,
                    f"notebooks[{i}].path",
                    f"notebook {notebook.path!r} not found in {loaded.project_dir}",
                    "check the path, relative to project_dir",
                )
            )
    return problems
