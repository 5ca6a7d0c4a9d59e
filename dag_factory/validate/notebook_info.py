"""What a notebook declares: its kernel, language and parameters cell, cached by content.

The parameters cell is read as the kernel's language (`python_cell` with Python's parser,
`assignments` for the other languages papermill injects into); which language that is, and which
values can be injected at all, papermill's own translators decide, as they do at run time: the
translator of the kernel the run uses (`-k`), else of the notebook's language.

Importing papermill takes about a second, far more than validating a spec, so the result of an
inspection is cached on disk per notebook content hash (and papermill version): a notebook is only
inspected again when its bytes change. `$DAG_FACTORY_CACHE_DIR` moves the cache (default
`$XDG_CACHE_HOME/dag-factory` or `~/.cache/dag-factory`); `DAG_FACTORY_CACHE_DIR=off` disables it
(dag_factory.settings).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dag_factory import settings
from dag_factory.errors import DagFactoryError
from dag_factory.validate.assignments import SYNTAXES, read_assignments
from dag_factory.validate.declared import CellReading, Declared, kind_of
from dag_factory.validate.python_cell import early_exits, read_python_cell

CACHE_VERSION = 2
PARAMETERS_TAG = "parameters"
# papermill's translator classes -> our reader of that language ("python" or a key of SYNTAXES)
_READERS = {
    "PythonTranslator": "python",
    "RTranslator": "r",
    "JuliaTranslator": "julia",
    "ScalaTranslator": "scala",
    "MatlabTranslator": "matlab",
    "CSharpTranslator": "csharp",
    "FSharpTranslator": "fsharp",
    "PowershellTranslator": "powershell",
    "BashTranslator": "bash",
}
_SAMPLES: list[Any] = [None, "text", True, 1, 1.5, [1], {"k": 1}]
_READER_MODULES = ("notebook_info.py", "python_cell.py", "assignments.py", "declared.py")


@dataclass(frozen=True)
class Note:
    """Something about a notebook that is worth a warning, at a cell (1-based) and a line in it."""

    cell: int
    line: int
    message: str
    hint: str = ""


@dataclass
class NotebookInfo:
    """An inspected notebook; `error` (and `hint`) set when it cannot be read or run as a notebook.

    `language` is the language whose reader read the parameters cell (python, r, julia, ...);
    `unread`: the parameters cell holds statements the reader could not read, so a name it does not
    find may still be declared there; `uninjectable`: kinds of values papermill's translator for
    this notebook cannot write (a dict for bash, null for C#).
    """

    error: str = ""
    hint: str = ""
    parameter_cells: list[int] = field(default_factory=list)
    kernel: str | None = None
    language: str | None = None
    parameters: dict[str, Declared] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    unread: bool = False
    uninjectable: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["parameters"] = [asdict(p) for p in self.parameters.values()]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NotebookInfo:
        declared = [Declared(**p) for p in data.pop("parameters")]
        notes = [Note(**n) for n in data.pop("notes")]
        return cls(**data, notes=notes, parameters={p.name: p for p in declared})


class NotebookUnreadable(DagFactoryError):
    """A notebook whose parameters cannot be read (not a notebook, no parameters cell, ...)."""


def _cache_dir() -> Path | None:
    return settings.user_cache_dir("notebooks")


@functools.cache
def _papermill_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("papermill")
    except PackageNotFoundError:  # pragma: no cover - papermill is a dependency
        return "unknown"


@functools.cache
def _reader_code() -> bytes:
    """The modules that read a notebook: a change of them invalidates the cache (read once a process;
    validating a folder of specs asks for every notebook)."""
    here = Path(__file__).parent
    return b"\0".join((here / name).read_bytes() for name in _READER_MODULES)


def _cache_file(raw: bytes, fallback_kernel: str) -> Path | None:
    folder = _cache_dir()
    if folder is None:
        return None
    digest = hashlib.sha256(b"\0".join([raw, fallback_kernel.encode(), _reader_code()])).hexdigest()
    return folder / f"notebooks-v{CACHE_VERSION}-pm{_papermill_version()}" / f"{digest}.json"


def _read_cache(path: Path | None) -> NotebookInfo | None:
    if path is None:
        return None
    try:
        return NotebookInfo.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _write_cache(path: Path | None, info: NotebookInfo) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info.to_json()))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs speed


def _translator(kernel: str, language: str) -> Any:
    """papermill's translator for a run with `-k kernel` of a notebook in `language` (None: none)."""
    from papermill.exceptions import PapermillException
    from papermill.translators import papermill_translators

    try:
        return papermill_translators.find_translator(kernel, language)
    except PapermillException:
        return None


def _reader_of(translator: Any) -> str | None:
    for cls in translator.__mro__:
        if cls.__name__ in _READERS:
            return _READERS[cls.__name__]
    return None


def _uninjectable(translator: Any) -> list[str]:
    """The kinds of values the translator has no form for: papermill would fail the run."""
    missing = []
    for sample in _SAMPLES:
        try:
            translator.translate(sample)
        except NotImplementedError:
            missing.append(kind_of(sample) or "null")
    return missing


def _read_cell(source: str, reader: str) -> CellReading:
    return read_python_cell(source) if reader == "python" else read_assignments(source, SYNTAXES[reader])


def _read_parameters(info: NotebookInfo, source: str, cell: int, reader: str) -> None:
    reading = _read_cell(source, reader)
    if reading.syntax_error:
        bad = reading.syntax_error
        info.error = (
            f"has a parameters cell (cell {cell}) that does not compile: "
            f"{bad.reason} at line {bad.line}: {bad.text}"
        )
        info.hint = "fix the cell in jupyter: papermill would fail every run at this cell"
        return
    info.parameters = {}
    for declared in reading.parameters:  # in first-seen order; the last assignment's default counts
        info.parameters[declared.name] = declared
    info.unread = bool(reading.unread)
    for unread in reading.unread:
        info.notes.append(
            Note(
                cell,
                unread.line,
                f"parameters cell not read here ({unread.reason}): {unread.text}",
                "write each parameter as a plain top-level assignment, name = value; "
                "the contract cannot check what it cannot read",
            )
        )


def _exit_notes(nb: Any) -> list[Note]:
    notes = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for line, text in early_exits(cell.source):
            notes.append(
                Note(
                    index + 1,
                    line,
                    f"{text} stops papermill at this cell and the run reports success; "
                    "the cells after it never run",
                    "raise an exception to fail the run, or put the cells' remaining work under an if",
                )
            )
    return notes


def _inspect_node(nb: Any, kernel: str) -> NotebookInfo:
    cells = [i for i, cell in enumerate(nb.cells) if PARAMETERS_TAG in cell.metadata.get("tags", [])]
    kernelspec = nb.metadata.get("kernelspec", {})
    info = NotebookInfo(parameter_cells=cells, kernel=kernelspec.get("name") or None)
    language = nb.metadata.get("language_info", {}).get("name") or kernelspec.get("language") or None
    if language is None:  # papermill's own rule (utils.nb_language): it then fails every run
        info.error = "records no language (metadata language_info.name or kernelspec.language)"
        info.hint = "papermill needs it to write the parameters: save the notebook again from jupyter"
        return info
    translator = _translator(kernel, language)
    if translator is None:
        info.error = (
            "cannot be parameterized by papermill: "
            f"no translator for kernel {kernel!r} or language {language!r}"
        )
        info.hint = (
            "papermill parameterizes python, r, julia, scala, matlab, c#, f#, powershell and bash kernels"
        )
        return info
    reader = _reader_of(translator)
    info.language = reader
    info.uninjectable = _uninjectable(translator)
    if reader == "python":
        info.notes.extend(_exit_notes(nb))
    if len(cells) != 1:
        return info
    if reader is None:
        info.unread = True
        info.notes.append(
            Note(cells[0] + 1, 1, f"the contract cannot read parameters cells of {language} notebooks")
        )
        return info
    _read_parameters(info, nb.cells[cells[0]].source, cells[0] + 1, reader)
    return info


def _schema_problem(exc: Exception) -> str:
    """A short 'where: what' from nbformat's (jsonschema's) error, without echoing the whole cell."""
    message = str(getattr(exc, "message", "") or exc).strip().splitlines()[0] if str(exc).strip() else ""
    instance = getattr(exc, "instance", None)
    if isinstance(instance, dict) and instance.get("cell_type") not in (None, "code", "markdown", "raw"):
        message = f"unknown cell_type {instance['cell_type']!r}; expected code, markdown or raw"
    elif instance is not None and message.startswith(repr(instance)):
        message = "it" + message[len(repr(instance)) :]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in getattr(exc, "absolute_path", []))
    where = where.lstrip(".")
    text = f"{where}: {message}" if where else message or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _read(raw: bytes, kernel: str | None) -> NotebookInfo:
    import nbformat

    try:
        text = raw.decode("utf-8")
        data = json.loads(text)
    except UnicodeDecodeError:
        return NotebookInfo(error="is not utf-8 text", hint="save it again from jupyter")
    except json.JSONDecodeError as exc:
        message = f"is not valid json: {exc.msg.lower()} at line {exc.lineno} column {exc.colno}"
        return NotebookInfo(error=message, hint="fix the json, or save the notebook again from jupyter")
    if not isinstance(data, dict) or "cells" not in data or "nbformat" not in data:
        return NotebookInfo(error="is json but not a notebook (no 'cells'/'nbformat')", hint="")
    try:
        nb = nbformat.reads(text, as_version=4, capture_validation_error={})  # type: ignore[no-untyped-call]
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises many kinds for a malformed document
        return NotebookInfo(
            error=f"is not a valid notebook (nbformat): {_schema_problem(exc)}",
            hint="save the notebook again from jupyter",
        )
    own = nb.metadata.get("kernelspec", {}).get("name") or ""
    return _inspect_node(nb, kernel or own)


def inspect_notebook(path: Path, kernel: str | None = None) -> NotebookInfo:
    """The notebook's kernel, language and parameters cell(s) for a run with kernel `kernel` (None:
    the notebook's own); `error` set when unreadable."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return NotebookInfo(error=f"cannot be read: {exc.strerror or exc}".lower())
    cache = _cache_file(raw, kernel or "")
    cached = _read_cache(cache)
    if cached is not None:
        return cached
    info = _read(raw, kernel)
    _write_cache(cache, info)
    return info


def declared_parameters(path: Path, kernel: str | None = None) -> list[Declared]:
    """The parameters a notebook declares, in the order of its parameters cell: name, default as
    written, type where clear, line in the cell. Raises NotebookUnreadable with the reason when the
    notebook cannot be read, has not exactly one parameters cell, or that cell does not compile."""
    info = inspect_notebook(path, kernel)
    problem = info.error
    if not problem and len(info.parameter_cells) != 1:
        problem = f"has {len(info.parameter_cells)} cells tagged {PARAMETERS_TAG!r}, not one"
    if problem:
        raise NotebookUnreadable(f"{path}: {problem}" + (f" ({info.hint})" if info.hint else ""))
    return list(info.parameters.values())
