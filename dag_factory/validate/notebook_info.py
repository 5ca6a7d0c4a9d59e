"""What a notebook declares: its parameters cell read by papermill's own inspection, cached by content.

Importing papermill takes about a second, far more than validating a spec, so the result of an
inspection is cached on disk per notebook content hash (and papermill version): a notebook is only
inspected again when its bytes change. `$DAG_FACTORY_CACHE_DIR` moves the cache (default
`$XDG_CACHE_HOME/dag-factory` or `~/.cache/dag-factory`); `DAG_FACTORY_CACHE_DIR=off` disables it
(dag_factory.settings).

papermill's regex-based inspection does not know annotation-only declarations (`x: int`, a
parameter without a default): it glues them onto the previous definition. Those lines are taken
out before papermill reads the cell and reported as required parameters.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dag_factory import settings

CACHE_VERSION = 1
PARAMETERS_TAG = "parameters"
_ANNOTATION_ONLY = re.compile(r"^(?P<name>[A-Za-z_]\w*)\s*:\s*(?P<type>[^=#]+?)\s*(#\s*(?P<help>.*))?$")
_KINDS = {"int": "int", "float": "float", "str": "string", "bool": "bool", "list": "list", "dict": "dict"}


@dataclass(frozen=True)
class Declared:
    """One parameter of a notebook's parameters cell."""

    name: str
    type_name: str  # papermill's inferred_type_name: the annotation or type comment, 'None' if absent
    default: str | None  # source text; None: declared without a default (`x: int`)
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is None

    @property
    def kind(self) -> str | None:
        """int, float, string, bool, list, dict; None when the type is not clear."""
        if self.default is not None:
            try:
                value = ast.literal_eval(self.default)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                value = _Unknown
            if value is not _Unknown and value is not None:
                return kind_of(value)
        base = self.type_name.split("[", 1)[0].strip()
        return _KINDS.get(base)

    def shown(self) -> str:
        annotation = f": {self.type_name}" if self.type_name not in ("None", "") else ""
        return f"{self.name}{annotation}" + (f" = {self.default}" if self.default is not None else "")


class _Unknown:
    pass


def kind_of(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return None


@dataclass
class NotebookInfo:
    """An inspected notebook; `error` (and `hint`) set when it cannot be read as a notebook."""

    error: str = ""
    hint: str = ""
    parameter_cells: list[int] = field(default_factory=list)
    kernel: str | None = None
    language: str | None = None
    parameters: dict[str, Declared] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["parameters"] = [asdict(p) for p in self.parameters.values()]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NotebookInfo:
        declared = [Declared(**p) for p in data.pop("parameters")]
        return cls(**data, parameters={p.name: p for p in declared})


def _cache_dir() -> Path | None:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return settings.cache_dir("notebooks", Path(base) / "dag-factory")


def _papermill_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("papermill")
    except PackageNotFoundError:  # pragma: no cover - papermill is a dependency
        return "unknown"


def _cache_file(raw: bytes, fallback_kernel: str) -> Path | None:
    folder = _cache_dir()
    if folder is None:
        return None
    code = Path(__file__).read_bytes()  # a change of this module's reading invalidates the cache
    digest = hashlib.sha256(b"\0".join([raw, fallback_kernel.encode(), code])).hexdigest()
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


def _split_annotation_only(source: str) -> tuple[str, list[Declared]]:
    """Annotation-only lines (`x: int`) out of the cell source, as required parameters."""
    kept, required = [], []
    for line in source.splitlines():
        match = _ANNOTATION_ONLY.match(line.strip()) if not line[:1].isspace() else None
        if match and not line.strip().startswith("#"):
            help_text = (match.group("help") or "").strip()
            required.append(Declared(match.group("name"), match.group("type").strip(), None, help_text))
            kept.append("")
        else:
            kept.append(line)
    return "\n".join(kept), required


def _inspect_node(nb: Any, fallback_kernel: str) -> NotebookInfo:
    import nbformat
    from papermill.exceptions import PapermillException
    from papermill.inspection import _infer_parameters

    cells = [i for i, cell in enumerate(nb.cells) if PARAMETERS_TAG in cell.metadata.get("tags", [])]
    kernelspec = nb.metadata.get("kernelspec", {})
    info = NotebookInfo(parameter_cells=cells, kernel=kernelspec.get("name") or None)
    info.language = nb.metadata.get("language_info", {}).get("name") or kernelspec.get("language") or None
    if len(cells) != 1:
        return info
    cell = nb.cells[cells[0]]
    source, required = _split_annotation_only(cell.source)
    single = nbformat.v4.new_notebook(metadata=nb.metadata)  # type: ignore[no-untyped-call]
    single.cells.append(
        nbformat.v4.new_code_cell(source, metadata={"tags": [PARAMETERS_TAG]})  # type: ignore[no-untyped-call]
    )
    try:
        kernel, language = info.kernel or fallback_kernel, info.language or "python"
        found = _infer_parameters(single, name=kernel, language=language)
    except (PapermillException, ValueError):
        info.error = f"cannot be parameterized by papermill: no translator for kernel {kernel!r} ({language})"
        info.hint = "papermill parameterizes python, r, julia, scala, matlab, c#, f# and powershell kernels"
        return info
    declared = [Declared(p.name, p.inferred_type_name, p.default, p.help) for p in found]
    lines = [line.split("=", 1)[0].split(":", 1)[0].strip() for line in cell.source.splitlines()]
    order = {name: i for i, name in reversed(list(enumerate(lines)))}
    ordered = sorted([*declared, *required], key=lambda p: order.get(p.name, len(lines)))
    info.parameters = {p.name: p for p in ordered}
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


def _read(raw: bytes, fallback_kernel: str) -> NotebookInfo:
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
    return _inspect_node(nb, fallback_kernel)


def inspect_notebook(path: Path, fallback_kernel: str = "python3") -> NotebookInfo:
    """The notebook's kernel, language and parameters cell(s); `error` set when unreadable."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return NotebookInfo(error=f"cannot be read: {exc.strerror or exc}".lower())
    cache = _cache_file(raw, fallback_kernel)
    cached = _read_cache(cache)
    if cached is not None:
        return cached
    info = _read(raw, fallback_kernel)
    _write_cache(cache, info)
    return info
