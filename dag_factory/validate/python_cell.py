"""Python cells read by Python's own parser.

papermill's inspection reads a cell line by line with a regex: it skips every line holding two `=`
(`x = 0.5  # keep rows whose score >= x`), and it takes `backoff=2` inside a multi-line call for a
parameter. Here the cell is parsed with `ast`: the parameters are the names assigned at the top
level of the cell (`x = 1`, `x: float = 1`, `x: int` without a default, `a = b = 1`, `a, b = 1, 2`),
their defaults the values as written (a literal's type read with `ast.literal_eval`), their types
the annotations (`float`, `list[str]`, `Optional[int]`) or papermill's `# type: int` comments, their
help a trailing comment, as papermill reads them. IPython syntax (`%matplotlib inline`, `!ls`) is
turned into Python first, as the kernel does.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterator

from dag_factory.validate.declared import (
    CellReading,
    Declared,
    Unread,
    kind_of,
    kind_of_type,
    literal_json,
    one_line,
)

_BLOCKS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try, ast.Match)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_CONSTRUCTORS = {
    "dict": "dict",
    "list": "list",
    "tuple": "list",
    "str": "string",
    "int": "int",
    "float": "float",
}
_EXITS = {("sys", "exit")}  # IPython's own exit()/quit() do not stop a notebook run


def _ipython_to_python(source: str) -> str:
    from IPython.core.inputtransformer2 import TransformerManager

    return str(TransformerManager().transform_cell(source))  # type: ignore[no-untyped-call]


def parse_cell(source: str) -> ast.Module:
    """The cell as the kernel compiles it; SyntaxError when it does not compile."""
    try:
        return ast.parse(source, type_comments=True)
    except SyntaxError as plain:
        if "%" not in source and "!" not in source and "?" not in source:
            raise
        try:  # IPython magics and shell escapes are Python after IPython's transform
            return ast.parse(_ipython_to_python(source), type_comments=True)
        except SyntaxError:
            raise plain from None


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = source.splitlines()

    def text(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.source, node) or ""

    def help(self, stmt: ast.stmt) -> str:
        """The comment after the statement's last line (papermill's help text)."""
        end = stmt.end_lineno or stmt.lineno
        if end > len(self.lines):
            return ""
        rest = self.lines[end - 1][stmt.end_col_offset or 0 :]
        return rest.split("#", 1)[1].strip() if "#" in rest else ""

    def declared(self, stmt: ast.stmt, name: str, value: ast.expr | None, type_name: str) -> Declared:
        literal, is_literal = None, False
        if value is not None:
            with contextlib.suppress(ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                literal, is_literal = ast.literal_eval(value), True
        kind = kind_of_type(type_name) if type_name else None
        if kind is None and is_literal:
            kind = kind_of(literal)
        elif kind is None and isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            kind = _CONSTRUCTORS.get(value.func.id)  # dict(a=1), list(range(3)), float("nan")
        help_text = self.help(stmt)
        if help_text.startswith("type:"):
            help_text = ""
        return Declared(
            name=name,
            default=None if value is None else self.text(value),
            kind=kind,
            type_name=type_name,
            line=stmt.lineno,
            help=help_text,
            value=literal_json(literal) if is_literal else None,
        )

    def assignment(self, stmt: ast.Assign) -> Iterator[Declared]:
        type_name = stmt.type_comment or ""
        for target in stmt.targets:
            if isinstance(target, ast.Name):
                yield self.declared(stmt, target.id, stmt.value, type_name)
            elif isinstance(target, ast.Tuple | ast.List):
                names = [t.id for t in target.elts if isinstance(t, ast.Name)]
                value = stmt.value
                pairs = isinstance(value, ast.Tuple | ast.List) and len(value.elts) == len(
                    target.elts
                ) == len(names)
                for i, name in enumerate(names):
                    element = value.elts[i] if pairs and isinstance(value, ast.Tuple | ast.List) else value
                    yield self.declared(stmt, name, element, "")


def _assigns_a_name(block: ast.stmt) -> bool:
    for node in _walk_code(block):
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
            return True
    return False


def read_python_cell(source: str) -> CellReading:
    """The parameters a Python parameters cell declares (see the module's docstring)."""
    try:
        tree = parse_cell(source)
    except SyntaxError as exc:
        lines = source.splitlines()
        line = exc.lineno or 1
        shown = lines[line - 1] if 0 < line <= len(lines) else ""
        return CellReading(syntax_error=Unread(line, one_line(shown), (exc.msg or "invalid syntax").lower()))
    reader = _Reader(source)
    found = CellReading()
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            found.parameters.extend(reader.assignment(stmt))
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            declared = reader.declared(stmt, stmt.target.id, stmt.value, reader.text(stmt.annotation))
            found.parameters.append(declared)
        elif isinstance(stmt, _BLOCKS) and _assigns_a_name(stmt):
            keyword = type(stmt).__name__.lower().removeprefix("async")
            text = one_line(reader.lines[stmt.lineno - 1])
            found.unread.append(Unread(stmt.lineno, text, f"an assignment inside `{keyword}`"))
    return found


def _walk_code(node: ast.AST) -> Iterator[ast.AST]:
    """Every node that runs when the cell runs: not the bodies of functions, classes and lambdas."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, _SCOPES):
            continue
        yield child
        yield from _walk_code(child)


def _exit_name(call: ast.Call) -> tuple[str, str] | None:
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return (func.value.id, func.attr)
    if isinstance(func, ast.Name):
        return ("", func.id)
    return None


def _is_success_code(args: list[ast.expr]) -> bool:
    """papermill counts SystemExit as success when its code shows as '' or '0': no argument or 0;
    an argument that is not a literal may be 0."""
    if not args:
        return True
    try:
        code = ast.literal_eval(args[0])
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return True
    return (type(code) is int and code == 0) or code == ""


def early_exits(source: str) -> list[tuple[int, str]]:
    """(line, statement) of each `sys.exit()` / `raise SystemExit` the cell runs that papermill
    would take for success: it stops the notebook there and reports the run as succeeded."""
    try:
        tree = parse_cell(source)
    except SyntaxError:
        return []
    lines = source.splitlines()
    found = []
    for node in _walk_code(tree):
        if isinstance(node, ast.Call) and _exit_name(node) in _EXITS:
            if _is_success_code(node.args):
                found.append(node.lineno)
        elif isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc
            name = exc.func if isinstance(exc, ast.Call) else exc
            args = exc.args if isinstance(exc, ast.Call) else []
            if isinstance(name, ast.Name) and name.id == "SystemExit" and _is_success_code(args):
                found.append(node.lineno)
    return [(line, one_line(lines[line - 1])) for line in sorted(set(found)) if line <= len(lines)]
