"""Notebook contract: what the spec passes must match what each notebook declares.

Rules (each problem is reported at the spec line that causes it):
- every notebook exists in the project folder, is valid nbformat and has exactly one cell tagged
  `parameters`;
- the factory passes every global parameter (`parameters:`) and every per-value parameter
  (`fan_out.parameters`) to every notebook, and papermill only warns about names a notebook does
  not declare; so each of them must be declared by at least one notebook (else it is a typo or dead);
- a per-notebook parameter (`notebooks[i].parameters`) must be declared by that notebook;
- the standard parameters (env, aws_account_id, logical_date, run_id, output_prefix and the fan-out
  name) need not be declared;
- a parameter declared without a default (`x: int`) must be passed, for every fan-out value;
- a value whose type clearly differs from the notebook's default (int vs string, list vs scalar,
  bool vs int, ...) is an error; a float default accepts an int, a None default accepts anything;
- the kernel the spec names (notebooks[i].kernel, else runtime.kernel) is the notebook's own
  kernelspec name, when the notebook records one;
- the parameters cell compiles, and papermill's translator for the notebook can write every value
  passed to it (bash has no dicts, C# no nulls).
Warnings, which never make a spec invalid: what the notebook's reader could not read (a name the
spec passes that is not found is then a warning, not an error: it may be declared there), and a
top-level `sys.exit()` that papermill would take for success.
Every environment's effective spec is checked; a problem an override introduces points at the override.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dag_factory.errors import Diagnostic, closest, did_you_mean
from dag_factory.load.project import shown_path
from dag_factory.load.specs import LoadedSpec
from dag_factory.load.yaml_source import Loc, Mark, YamlDocument, format_loc
from dag_factory.spec.job import JobSpec
from dag_factory.validate.declared import Declared, kind_of
from dag_factory.validate.notebook_info import NotebookInfo, inspect_notebook

_ARTICLE = {
    "null": "a null",
    "int": "an int",
    "float": "a float",
    "number": "a number",
    "string": "a string",
    "bool": "a boolean",
    "list": "a list",
}
_PLURAL = {
    "string": "strings",
    "int": "ints",
    "float": "floats",
    "bool": "booleans",
    "list": "lists",
    "dict": "dicts",
    "null": "nulls",
}
_LANGUAGES = {"r": "an R", "csharp": "a C#", "fsharp": "an F#", "powershell": "a PowerShell"}
_EXAMPLE = {
    "int": "6",
    "float": "0.5",
    "string": '"text"',
    "bool": "true",
    "list": "[a, b]",
    "dict": "{k: v}",
    "number": "0.5",
}
# YAML 1.1 (PyYAML) reads a float only with a dot and a signed exponent (6.02e+23): 6.02e23, 1e-3 are strings
_EXPONENT_WITHOUT_SIGN = re.compile(r"[-+]?(\d[\d_]*)(\.\d*)?[eE]\d+\Z")
_EXPONENT = re.compile(r"[-+]?(\.\d+|\d[\d_]*(\.\d*)?)[eE][-+]?\d+\Z")


def _kind_text(kind: str) -> str:
    return _ARTICLE.get(kind, f"a {kind}")


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _language(info: NotebookInfo) -> str:
    name = info.language or "python"
    return _LANGUAGES.get(name, f"a {name.capitalize() if name != 'matlab' else 'Matlab'}")


def _accepts(declared: str | None, given: str | None) -> bool:
    if declared is None or given is None or declared == given:
        return True
    if declared == "number":  # an R or Matlab double
        return given in ("int", "float")
    return declared == "float" and given == "int"


def _kinds_in(value: Any) -> set[str]:
    """The kinds of a value and of everything inside it (null as 'null')."""
    found = {kind_of(value) or "null"}
    if isinstance(value, dict):
        for item in value.values():
            found |= _kinds_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= _kinds_in(item)
    return found


def _yaml_number_hint(value: Any, kind: str) -> str:
    """A string that looks like a number, for a float: 6.02e23 is a string in YAML 1.1 (the number
    needs a dot and a signed exponent, 6.02e+23); unquoted, load already says so, quoted it lands here."""
    if kind not in ("float", "number") or not isinstance(value, str) or not _EXPONENT.match(value):
        return ""
    mantissa, exponent = re.split("[eE]", value)
    mantissa = mantissa if "." in mantissa else f"{mantissa}.0"
    if _EXPONENT_WITHOUT_SIGN.match(value):
        return f"pass the number unquoted, written {mantissa}e+{exponent} or {mantissa}E+{exponent}"
    return f"pass the number unquoted, written {mantissa}e{exponent}"


def _undeclared_hint(name: str, declared: Iterable[str], fallback: str) -> str:
    """did-you-mean from the declared names when one is close (or the only one that begins with the
    name: `m` for `msg`), else the fix."""
    names = list(declared)
    close = closest(name, names)
    if close is not None:
        return did_you_mean(close)
    begun = [n for n in names if n.startswith(name)]
    return did_you_mean(begun[0]) if len(begun) == 1 else fallback


@dataclass
class _Check:
    """One environment's effective spec against the inspected notebooks."""

    loaded: LoadedSpec
    spec: JobSpec
    env: str | None
    infos: dict[int, NotebookInfo]
    found: list[Diagnostic] = field(default_factory=list)

    @property
    def doc(self) -> YamlDocument:
        return self.loaded.doc

    def _where(self, loc: Loc, key: bool) -> tuple[str, Mark]:
        """The override's own position when the environment sets this location, else the base file's."""
        positions = self.doc.positions
        if self.env is not None:
            full = ("environments", self.env, *loc)
            for end in range(len(full), 2, -1):
                part = full[:end]
                if part in positions.keys or part in positions.values:
                    mark = positions.of_key(part) if key and end == len(full) else positions.of_value(part)
                    return format_loc(full), mark
        return format_loc(loc), positions.of_key(loc) if key else positions.of_value(loc)

    def add(self, loc: Loc, message: str, hint: str = "", key: bool = False, warning: bool = False) -> None:
        shown, mark = self._where(loc, key)
        severity: Literal["error", "warning"] = "warning" if warning else "error"
        path = str(self.loaded.path)
        self.found.append(Diagnostic(path, mark.line, mark.col, shown, message, hint, severity))

    def standard(self) -> set[str]:
        return set(self.spec.standard_parameters)

    def readable(self) -> dict[int, NotebookInfo]:
        return {
            i: info for i, info in self.infos.items() if not info.error and len(info.parameter_cells) == 1
        }

    def run(self) -> list[Diagnostic]:
        self.check_kernels()
        readable = self.readable()
        if len(readable) == len(self.spec.notebooks):  # shared parameters need every notebook read
            self.check_shared()
        for i in readable:
            self.check_own(i)
            self.check_required(i)
        return self.found

    def check_kernels(self) -> None:
        for i, notebook in enumerate(self.spec.notebooks):
            info = self.infos[i]
            wanted = notebook.kernel or self.spec.runtime.kernel
            if info.error or info.kernel is None or info.kernel == wanted:
                continue
            if notebook.kernel is not None:
                loc: Loc = ("notebooks", i, "kernel")
            elif "runtime" in self.spec.model_fields_set and "kernel" in self.spec.runtime.model_fields_set:
                loc = ("runtime", "kernel")
            else:
                loc = ("notebooks", i, "path")
            self.add(
                loc,
                f"kernel {wanted!r} differs from the kernel {notebook.path} was saved with, {info.kernel!r}",
                f"set kernel: {info.kernel} on this notebook in the spec, "
                f"or switch the notebook's kernel to {wanted} in jupyter",
            )

    def _declared_anywhere(self) -> dict[str, list[int]]:
        where: dict[str, list[int]] = {}
        for i, info in self.readable().items():
            for name in info.parameters:
                where.setdefault(name, []).append(i)
        return where

    def _check_value(self, loc: Loc, name: str, value: Any, notebooks: Iterable[int]) -> None:
        """`value` reaches these notebooks: each can take it (translator) and, if it declares it, its type."""
        given = kind_of(value)
        for i in notebooks:
            info = self.infos[i]
            cannot = sorted(_kinds_in(value) & set(info.uninjectable))
            if cannot:
                allowed = [_PLURAL[k] for k in _PLURAL if k not in info.uninjectable]
                self.add(
                    loc,
                    f"parameter {name!r} holds {_kind_text(cannot[0])}, which papermill cannot write "
                    f"into {self.spec.notebooks[i].path} ({_language(info)} notebook)",
                    f"papermill writes {', '.join(allowed[:-1])} and {allowed[-1]} into it",
                )
                return
            declared = info.parameters.get(name)
            if declared is None or _accepts(declared.kind, given):
                continue
            self._mismatch(loc, name, value, i, declared)
            return

    def _mismatch(self, loc: Loc, name: str, value: Any, i: int, declared: Declared) -> None:
        kind = declared.kind or ""
        example = declared.example() or _EXAMPLE.get(kind, "...")
        hint = _yaml_number_hint(value, kind) or (
            f"pass {_kind_text(kind)}, e.g. {name}: {example}, or change the notebook's default"
        )
        self.add(
            loc,
            f"parameter {name!r} is {_shown(value)} ({_kind_text(kind_of(value) or 'null')}) but "
            f"{self.spec.notebooks[i].path} declares {declared.shown()} ({_kind_text(kind)})",
            hint,
        )

    def check_shared(self) -> None:
        """Global and per-value parameters: declared by at least one notebook, of a matching type."""
        where = self._declared_anywhere()
        unread = [self.spec.notebooks[i].path for i, info in self.infos.items() if info.unread]
        sources: list[tuple[Loc, str, dict[str, Any]]] = [
            (("parameters",), "every value", self.spec.parameters)
        ]
        if self.spec.fan_out:
            for value, params in self.spec.fan_out.parameters.items():
                sources.append((("fan_out", "parameters", value), value, params))
        for prefix, scope, params in sources:
            for name, value in params.items():
                loc = (*prefix, name)
                if name not in where:
                    paths = ", ".join(nb.path for nb in self.spec.notebooks)
                    fallback = f"declare {name} = <default> in the parameters cell of a notebook that uses it"
                    message = f"parameter {name!r} (for {scope}) is not declared by any notebook ({paths})"
                    if unread:  # it may be declared in what could not be read: say so, do not fail
                        message += f"; the parameters cell of {', '.join(unread)} was not read in full"
                    hint = _undeclared_hint(name, where, fallback)
                    self.add(loc, message, hint, key=True, warning=bool(unread))
                self._check_value(loc, name, value, self.infos)

    def check_own(self, i: int) -> None:
        notebook, info = self.spec.notebooks[i], self.infos[i]
        for name, value in notebook.parameters.items():
            loc: Loc = ("notebooks", i, "parameters", name)
            if name not in info.parameters:
                fallback = f"declare {name} = <default> in its parameters cell, or remove it here"
                message = f"parameter {name!r} is not declared in the parameters cell of {notebook.path}"
                if info.unread:  # it may be declared in what could not be read: say so, do not fail
                    message += " (as far as it could be read)"
                hint = _undeclared_hint(name, info.parameters, fallback)
                self.add(loc, message, hint, key=True, warning=info.unread)
            self._check_value(loc, name, value, [i])

    def check_required(self, i: int) -> None:
        notebook = self.spec.notebooks[i]
        passed = self.standard() | set(self.spec.parameters) | set(notebook.parameters)
        per_value = self.spec.fan_out.parameters if self.spec.fan_out else {}
        values = self.spec.values
        for declared in self.infos[i].parameters.values():
            if not declared.required or declared.name in passed:
                continue
            given_for = [v for v in values if declared.name in per_value.get(v, {})]
            missing = [v for v in values if v not in given_for]
            if given_for and not missing:
                continue
            passed_text = (
                f"the spec passes it only for {', '.join(given_for)}, not for {', '.join(missing)}"
                if given_for
                else "the spec never passes it"
            )
            self.add(
                ("notebooks", i, "path"),
                f"{notebook.path} declares {declared.shown()} without a default and {passed_text}",
                f"pass {declared.name} under parameters or notebooks[{i}].parameters, "
                f"or give it a default in the notebook: {declared.shown()} = ...",
            )


def _inspect_all(
    loaded: LoadedSpec, spec: JobSpec, cache: dict[tuple[Path, str], NotebookInfo]
) -> dict[int, NotebookInfo]:
    infos = {}
    for i, notebook in enumerate(spec.notebooks):
        path = loaded.project_dir / notebook.path
        kernel = notebook.kernel or spec.runtime.kernel
        key = (path, kernel)
        if key not in cache:
            if not path.is_file():
                cache[key] = NotebookInfo(error="missing")
            else:
                cache[key] = inspect_notebook(path, kernel)
        infos[i] = cache[key]
    return infos


def _file_problems(check: _Check) -> None:
    """The notebook files themselves: missing, unreadable, not exactly one parameters cell; their notes."""
    for i, notebook in enumerate(check.spec.notebooks):
        info = check.infos[i]
        loc: Loc = ("notebooks", i, "path")
        if info.error == "missing":
            folder = check.loaded.project_dir
            present = [p.relative_to(folder).as_posix() for p in folder.rglob("*.ipynb")]
            close = closest(notebook.path, present)
            hint = did_you_mean(close) if close else "check the path, relative to project_dir"
            check.add(loc, f"notebook {notebook.path!r} not found in {shown_path(folder)}", hint)
        elif info.error:
            check.add(loc, f"notebook {notebook.path} {info.error}", info.hint)
        elif not info.parameter_cells:
            check.add(
                loc,
                f"notebook {notebook.path} has no cell tagged 'parameters'",
                "put the parameter defaults in one cell and tag it 'parameters'; "
                "in jupyterlab: property inspector, cell tags",
            )
        elif len(info.parameter_cells) > 1:
            cells = ", ".join(str(c + 1) for c in info.parameter_cells)
            check.add(
                loc,
                f"notebook {notebook.path} has {len(info.parameter_cells)} cells tagged 'parameters' "
                f"(cells {cells})",
                "papermill only uses the first: merge them into one cell, or untag the others",
            )
        for note in info.notes:
            where = f"notebook {notebook.path}, cell {note.cell}, line {note.line}"
            check.add(loc, f"{where}: {note.message}", note.hint, warning=True)


def check_contract(loaded: LoadedSpec) -> list[Diagnostic]:
    """Every notebook the spec names satisfies the contract above, in every environment."""
    cache: dict[tuple[Path, str], NotebookInfo] = {}
    envs: list[tuple[str | None, JobSpec]] = [(None, loaded.spec)]
    envs.extend((name, spec) for name, spec in loaded.per_env.items() if name in loaded.spec.environments)
    found: set[Diagnostic] = set()
    for env, spec in envs:
        check = _Check(loaded, spec, env, _inspect_all(loaded, spec, cache))
        _file_problems(check)
        found.update(check.run())
    return sorted(found)
