"""The project folder a spec names (`project_dir`), and the repository it must stay inside.

The repository of a spec is the nearest folder at or above the spec's folder that holds `.git` (a
folder, or the file a git worktree has). Without git (a copy, an unpacked archive), it is the folder
holding the spec's `project_configs/` folder, where repositories laid out like this one keep their
specs; otherwise the spec's own folder (and what is below it). `project_dir` is resolved relative to
the spec, links included, and must exist and stay inside that repository: `validate` reads the
notebooks there and `deploy` uploads the folder, so `project_dir: ../../..` must not reach a home
directory.

Checked by `validate` and `deploy` (not by `load_spec`: `dag-factory diff` loads old versions of a
spec from a temporary folder, and Airflow never reads the project folder).
"""

from __future__ import annotations

import os
from pathlib import Path

from dag_factory.errors import Diagnostic
from dag_factory.load.files import CONFIG_FOLDER
from dag_factory.load.specs import LoadedSpec
from dag_factory.load.yaml_source import format_loc
from dag_factory.spec import text

_LOC = ("project_dir",)
_FOLDER_HINT = "the folder holding the notebooks, relative to this file"
_OUTSIDE_HINT = (
    "keep the notebooks inside the repository: the nearest folder above the spec holding .git "
    f"(without git: the folder holding {CONFIG_FOLDER}/, else the spec's own folder)"
)


def repository_root(spec: Path) -> Path:
    """The nearest folder at or above the spec's folder holding `.git`; else the parent of the
    `project_configs/` folder the spec is in; else the spec's folder."""
    folder = spec.resolve().parent
    above = [folder, *folder.parents]
    found = next((candidate for candidate in above if (candidate / ".git").exists()), None)
    if found is None:
        found = next((candidate.parent for candidate in above if candidate.name == CONFIG_FOLDER), folder)
    return found


def shown_path(path: Path) -> str:
    """A path relative to the working folder when below it (stable in golden files), else absolute."""
    try:
        return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


def shown_folder(path: Path) -> str:
    """`shown_path` of a folder, with a trailing '/'."""
    return shown_path(path).rstrip("/") + "/"


def inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def project_dir_problems(loaded: LoadedSpec) -> list[Diagnostic]:
    """The project folder is missing, not a folder, or outside the spec's repository: one diagnostic
    at `project_dir` (the notebooks are not looked at then)."""
    written = loaded.spec.project_dir
    try:
        problem = _problem(written, loaded.project_dir, repository_root(loaded.path))
    except OSError as exc:  # e.g. a name longer than the file system allows
        problem = f"project_dir {text.shown(written)} cannot be read: {exc.strerror}", _FOLDER_HINT
    if problem is None:
        return []
    mark = loaded.doc.positions.of_value(_LOC)
    return [Diagnostic(str(loaded.path), mark.line, mark.col, format_loc(_LOC), *problem)]


def _problem(written: str, folder: Path, repository: Path) -> tuple[str, str] | None:
    shown = text.shown(written)
    if not inside(folder, repository):
        where = f"{shown_folder(folder)}, outside the spec's repository {shown_folder(repository)}"
        return f"project_dir {shown} is {where}", _OUTSIDE_HINT
    if not folder.exists():
        return f"project_dir {shown}: no such folder {shown_folder(folder)}", _FOLDER_HINT
    if not folder.is_dir():
        return f"project_dir {shown} is a file, not a folder", _FOLDER_HINT
    return None
