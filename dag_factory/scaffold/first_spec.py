"""`dag-factory init`: a first job spec for a folder of notebooks, from their parameters cells.

The spec lists the notebooks in the order given (file order by default), each with the parameters its
parameters cell declares and their defaults as YAML values of the same type, minus the standard
parameters the factory sets itself. What it cannot write as a value (a default that is an
expression, a parameter without a default) is named in a comment at the top instead. The result is
meant to pass `dag-factory validate` as written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dag_factory.errors import DagFactoryError
from dag_factory.spec.job import STANDARD_PARAMETERS
from dag_factory.validate.notebook_info import inspect_notebook

DEFAULT_INSTANCE_TYPE = "ml.t3.medium"
DEFAULT_KERNEL = "python3"


class ScaffoldError(DagFactoryError):
    pass


@dataclass(frozen=True)
class NotebookDraft:
    path: str  # relative to the project folder, '/'-separated
    kernel: str
    parameters: dict[str, Any]
    not_written: tuple[str, ...] = ()  # why a declared parameter is not in the spec, one line each


@dataclass
class Scaffold:
    project: str
    notebooks: list[NotebookDraft] = field(default_factory=list)


def find_notebooks(project_dir: Path) -> list[str]:
    """Every notebook under the folder, in file order, skipping hidden folders and checkpoints."""
    found = []
    for path in sorted(project_dir.rglob("*.ipynb")):
        relative = path.relative_to(project_dir)
        if not any(part.startswith(".") for part in relative.parts):
            found.append(relative.as_posix())
    return found


def project_name(project_dir: Path) -> str:
    """The folder's name as a project name: lower case, [a-z0-9-], at most 40 characters."""
    name = re.sub(r"[^a-z0-9]+", "-", project_dir.resolve().name.lower()).strip("-")[:40].strip("-")
    return name or "notebook-job"


def draft_notebook(project_dir: Path, relative: str) -> NotebookDraft:
    """One notebook's kernel and parameters (the standard ones left out: the factory sets them)."""
    # the notebook's own kernel: its parameters cell is read in its language (R, Julia, ...)
    info = inspect_notebook(project_dir / relative, None)
    if info.error:
        hint = f" ({info.hint})" if info.hint else ""
        raise ScaffoldError(f"{project_dir / relative}: {info.error}{hint}")
    parameters: dict[str, Any] = {}
    not_written = []
    if info.unread:
        not_written.append("the parameters cell has statements init could not read; check them")
    for declared in info.parameters.values():
        if declared.name in STANDARD_PARAMETERS:
            continue
        if declared.default is None:
            not_written.append(f"{declared.name}: no default in the notebook; set it under parameters")
            continue
        value = json.loads(declared.value) if declared.value is not None else None
        if value is None:
            not_written.append(f"{declared.name}: default {declared.default} is left to the notebook")
            continue
        parameters[declared.name] = value
    return NotebookDraft(relative, info.kernel or DEFAULT_KERNEL, parameters, tuple(not_written))


def scaffold(project_dir: Path, order: list[str] | None = None) -> Scaffold:
    """Drafts for the notebooks in `order` (default: every notebook, in file order)."""
    if not project_dir.is_dir():
        raise ScaffoldError(f"{project_dir}: not a folder")
    found = find_notebooks(project_dir)
    if not found:
        raise ScaffoldError(f"{project_dir}: no notebooks (*.ipynb) in this folder or below")
    chosen = order if order is not None else found
    return Scaffold(project_name(project_dir), [draft_notebook(project_dir, path) for path in chosen])


def spec_data(
    draft: Scaffold, *, owner: str, start_date: dt.date, project_dir: str, requirements: bool
) -> dict[str, Any]:
    """The spec as plain data: the most used kernel for all, another one where a notebook differs."""
    kernels = [nb.kernel for nb in draft.notebooks]
    kernel = max(dict.fromkeys(kernels), key=kernels.count)
    notebooks = []
    for nb in draft.notebooks:
        entry: dict[str, Any] = {"path": nb.path}
        if nb.kernel != kernel:
            entry["kernel"] = nb.kernel
        if nb.parameters:
            entry["parameters"] = nb.parameters
        notebooks.append(entry)
    data: dict[str, Any] = {"version": 1, "project": draft.project, "owner": owner}
    if project_dir != ".":
        data["project_dir"] = project_dir
    data |= {
        "schedule": None,
        "start_date": start_date,
        "runtime": {"kernel": kernel} if requirements else {"kernel": kernel, "requirements": None},
        "compute": {"instance_type": DEFAULT_INSTANCE_TYPE},
        "notebooks": notebooks,
    }
    return data


def render_spec(
    draft: Scaffold, *, owner: str, start_date: dt.date, spec_path: Path, project_dir: Path
) -> str:
    """The spec file's text: a short header, then the spec."""
    relative = Path(os.path.relpath(project_dir.resolve(), spec_path.resolve().parent)).as_posix()
    requirements = (project_dir / "requirements.txt").is_file()
    data = spec_data(
        draft, owner=owner, start_date=start_date, project_dir=relative, requirements=requirements
    )
    header = [
        "# Written by `dag-factory init`: notebooks in run order, each with its parameters' defaults.",
        "# Next: a schedule, compute.instance_type, a fan_out and deliver targets"
        " (every key: dag-factory's docs/spec.md).",
    ]
    for nb in draft.notebooks:
        header += [f"# {nb.path}: {line}" for line in nb.not_written]
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return "\n".join(header) + "\n" + body


def write_spec(text: str, spec_path: Path, force: bool) -> None:
    if spec_path.exists() and not force:
        raise ScaffoldError(f"{spec_path} exists: pass --force to overwrite it")
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(text)


def parse_order(answer: str, found: list[str]) -> list[str]:
    """`2,1,3` (numbers of the listed notebooks; one left out is not run) -> their paths."""
    numbers = [part.strip() for part in answer.replace(" ", ",").split(",") if part.strip()]
    if not numbers or not all(n.isdigit() and 1 <= int(n) <= len(found) for n in numbers):
        raise ScaffoldError(f"{answer!r}: give numbers from 1 to {len(found)}, e.g. 2,1")
    if len(set(numbers)) != len(numbers):
        raise ScaffoldError(f"{answer!r}: each notebook runs once; name each number once")
    return [found[int(n) - 1] for n in numbers]
