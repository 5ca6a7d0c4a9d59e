"""Why a notebook failed, in the data scientist's terms: the cell as numbered in their notebook (not
in papermill's output, which adds an injected-parameters cell and error banners), the failing line
and the exception with its message.

This module is read in two places: by `dag-factory run`'s summary, and on the instance itself, where
the guard's run_notebook runs it (`explain_program`, one of the guard's tools) after papermill failed,
so that the task log says why (dag_factory is not installed there: keep this module to the standard
library).
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import Any

MARKER = "dag-factory: notebook error"  # the line the helper prints, found again in task logs
ADDED_TAGS = {"injected-parameters", "papermill-error-cell-tag"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# IPython: "Cell In[3], line 4"; older: "Input In [3], in <cell line: 4>()", "<ipython-input-3-...> in ..."
_PYTHON_LINE = re.compile(r"(?:Cell In\[\d*\]|Input In \[\d*\]), (?:line (\d+)|in <cell line: (\d+)>)")
# IRkernel: "1. stop("boom")", with "   # at line 2 of file <text>" when R kept the source reference
_R_CALL = re.compile(r"^\s*1\.\s+(\S.*?)(?:\s+# at line (\d+) of file <text>)?$", re.MULTILINE)
_LIMIT = 300


def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source or "")


def source_cell_number(notebook: dict[str, Any], output_index: int) -> int:
    """The 1-based number, in the notebook the data scientist wrote, of the executed notebook's cell
    at `output_index` (0-based): the cells papermill added before it do not count."""
    cells = notebook.get("cells", [])[: output_index + 1]
    added = sum(1 for c in cells if ADDED_TAGS & set(c.get("metadata", {}).get("tags", [])))
    return len(cells) - added


def papermill_cell_number(notebook: dict[str, Any], output_index: int) -> int:
    """The number papermill's log gave the executed notebook's cell at `output_index` ("Executing Cell
    N"): it counts the injected-parameters cell, not the error banners it added after the run."""
    cells = notebook.get("cells", [])[: output_index + 1]
    banners = sum(1 for c in cells if "papermill-error-cell-tag" in c.get("metadata", {}).get("tags", []))
    return len(cells) - banners


def _failing_line(traceback: str, source: list[str]) -> int | None:
    match = _PYTHON_LINE.search(traceback)  # the first frame is the cell's own
    if match:
        line = int(match.group(1) or match.group(2))
        return line if 0 < line <= len(source) else None
    call = _R_CALL.search(traceback)
    if call and call.group(2):
        line = int(call.group(2))
        return line if 0 < line <= len(source) else None
    if call:
        wanted = call.group(1).strip()
        for number, text in enumerate(source, start=1):
            if wanted and wanted in text:
                return number
    return None


def _exception(output: dict[str, Any]) -> str:
    name = str(output.get("ename") or "Error")
    lines = [line.strip() for line in str(output.get("evalue") or "").splitlines() if line.strip()]
    message = " ".join(lines)
    if not message:
        return name
    text = message if name.upper() == "ERROR" else f"{name}: {message}"  # IRkernel: ename "ERROR"
    return text if len(text) <= _LIMIT else text[: _LIMIT - 3] + "..."


def explain_notebook_error(notebook: dict[str, Any]) -> str:
    """`cell N (papermill's "Executing Cell P"), line L `code`: Exception: message` for the first cell of
    an executed notebook that raised ('' when none did): N counts the cells of the source notebook (as
    Jupyter shows them), P as papermill's log did (said when it differs), L the lines of that cell."""
    for index, cell in enumerate(notebook.get("cells", [])):
        for output in cell.get("outputs") or []:
            if output.get("output_type") != "error":
                continue
            source = _text(cell.get("source")).splitlines()
            traceback = _ANSI.sub("", "\n".join(_text(t) for t in output.get("traceback") or []))
            line = _failing_line(traceback, source)
            number, papermills = source_cell_number(notebook, index), papermill_cell_number(notebook, index)
            where = f"cell {number}"
            if papermills != number:  # the injected parameters cell came before it
                where += f" (papermill's \"Executing Cell {papermills}\")"
            if line is not None:
                where += f", line {line} `{source[line - 1].strip()}`"
            return f"{where}: {_exception(output)}"
    return ""


# The program's entry point on the instance: papermill (installed there, unlike dag_factory) reads the
# executed notebook, local or s3://; with no executed notebook (papermill failed before writing it)
# there is nothing to explain.
_ON_THE_INSTANCE = """
import sys

try:
    from papermill.iorw import load_notebook_node
    _explained = explain_notebook_error(load_notebook_node(sys.argv[1]))
except Exception:
    _explained = ""
if _explained:
    print(f"{MARKER} in {sys.argv[2]} {_explained}", flush=True)
"""


def _definitions(tree: ast.Module) -> dict[str, ast.stmt]:
    """The module's top-level imports, assignments and functions by the name they bind."""
    found: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            found[getattr(target, "id", "")] = node
        elif isinstance(node, ast.Import):
            found.update({alias.name: node for alias in node.names})
    return found


def _strip(node: ast.stmt) -> ast.stmt:
    """Without docstring and annotations: they do nothing on the instance but cost bytes per task."""
    if isinstance(node, ast.FunctionDef):
        body = node.body
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            node.body = body[1:] or [ast.Pass()]
        node.returns = None
        for arg in node.args.args:
            arg.annotation = None
    if isinstance(node, ast.AnnAssign) and node.value is not None:
        return ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno)
    return node


@functools.cache
def explain_program() -> str:
    """What explain_notebook_error needs of this module, then the entry point: the program a failed
    notebook step runs on its host, where dag_factory is not installed (one of the guard's tools).
    Only the definitions the entry point reaches go, without docstrings and annotations."""
    definitions = _definitions(ast.parse(Path(__file__).read_text(encoding="utf-8")))
    wanted, queue = set(), ["explain_notebook_error", "MARKER"]
    while queue:
        name = queue.pop()
        if name in wanted or name not in definitions:
            continue
        wanted.add(name)
        queue.extend(n.id for n in ast.walk(definitions[name]) if isinstance(n, ast.Name))
    kept = [node for node in definitions.values() if any(definitions.get(n) is node for n in wanted)]
    module = ast.Module(body=[_strip(node) for node in dict.fromkeys(kept)], type_ignores=[])
    return ast.unparse(ast.fix_missing_locations(module)) + _ON_THE_INSTANCE
