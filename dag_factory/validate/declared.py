"""What a parameters cell declares, whatever its language: the plain data both readers produce."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# int, float, number (an R or Matlab double: takes an int or a float), string, bool, list, dict
_TYPE_KINDS = {
    "int": "int", "integer": "int", "long": "int", "short": "int", "int32": "int", "int64": "int",
    "float": "float", "double": "float", "float32": "float", "float64": "float", "decimal": "float",
    "single": "float", "numeric": "number", "number": "number", "real": "float",
    "str": "string", "string": "string", "character": "string", "abstractstring": "string",
    "bool": "bool", "boolean": "bool", "logical": "bool",
    "list": "list", "vector": "list", "seq": "list", "array": "list", "tuple": "list", "sequence": "list",
    "dict": "dict", "map": "dict", "dictionary": "dict", "mapping": "dict", "hashtable": "dict",
}  # fmt: skip
_OPTIONAL = re.compile(r"^(?:typing\.)?Optional\[(?P<inner>.*)\]$")


def kind_of(value: Any) -> str | None:
    """The kind of a YAML/Python value; None for null or anything else."""
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


def kind_of_type(type_name: str) -> str | None:
    """The kind a written type means: `float`, `list[str]`, `Optional[int]`, `int | None`, `::Int64`,
    `Seq[String]`, `[double]`; None when it is not one of ours."""
    text = type_name.strip()
    if text.startswith("[") and text.endswith("]"):  # PowerShell: [int]
        text = text[1:-1].strip()
    optional = _OPTIONAL.match(text)
    if optional:
        text = optional.group("inner")
    parts = [p.strip() for p in text.split("|") if p.strip() not in ("None", "")]
    if len(parts) != 1:
        return None
    base = re.split(r"[\[{<(]", parts[0], maxsplit=1)[0].strip()
    base = base.rsplit(".", 1)[-1].lower()
    return _TYPE_KINDS.get(base)


@dataclass(frozen=True)
class Declared:
    """One parameter a notebook's parameters cell declares.

    `default` is the default as written in the notebook's language (None: declared without one,
    `x: int`); `value` is its JSON when it is a literal (None otherwise); `kind` the type it has
    where that is clear (from the written type, else from the literal); `line` counts from 1 at the
    first line of the parameters cell.
    """

    name: str
    default: str | None
    kind: str | None = None
    type_name: str = ""
    line: int = 0
    help: str = ""
    value: str | None = None

    @property
    def required(self) -> bool:
        return self.default is None

    def shown(self) -> str:
        annotation = f": {self.type_name}" if self.type_name else ""
        default = f" = {one_line(self.default)}" if self.default is not None else ""
        return f"{self.name}{annotation}{default}"

    def example(self) -> str:
        """The default as YAML (JSON is YAML) when it is a literal."""
        return self.value if self.value is not None else ""


def literal_json(value: Any) -> str | None:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Unread:
    """A statement of a parameters cell the reader could not read as a declaration."""

    line: int
    text: str
    reason: str


@dataclass
class CellReading:
    """A parameters cell read: its declarations, what could not be read, or why it does not compile."""

    parameters: list[Declared] = field(default_factory=list)
    unread: list[Unread] = field(default_factory=list)
    syntax_error: Unread | None = None


def one_line(text: str, limit: int = 60) -> str:
    """A statement shown inside a message: whitespace collapsed, long ones shortened."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
