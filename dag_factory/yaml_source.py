"""Read YAML into plain data while keeping where every key and value came from.

libyaml's C parser composes the node tree (fast, no objects constructed); we then turn nodes
into dicts/lists/scalars ourselves so that unsafe tags, duplicate keys, non-string keys and
alias bombs become located diagnostics instead of surprises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dag_factory.errors import Diagnostic, SpecError

Loc = tuple[str | int, ...]

# Nodes a document may expand to through aliases; a billion-laughs file stops here, not in swap.
MAX_NODES = 50_000
MAX_BYTES = 2_000_000

_SAFE_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
}
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    col: int  # 1-based


@dataclass
class Positions:
    """Where each key (`keys`) and each value (`values`) sits, by its location in the data."""

    keys: dict[Loc, Mark] = field(default_factory=dict)
    values: dict[Loc, Mark] = field(default_factory=dict)

    def of_value(self, loc: Loc) -> Mark:
        """The value at loc, else the nearest enclosing one that has a position."""
        for end in range(len(loc), -1, -1):
            mark = self.values.get(loc[:end])
            if mark is not None:
                return mark
        return Mark(1, 1)

    def of_key(self, loc: Loc) -> Mark:
        return self.keys.get(loc) or self.of_value(loc)


@dataclass
class YamlDocument:
    path: str
    data: Any
    positions: Positions


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


class _Converter:
    def __init__(self, path: str) -> None:
        self.path = path
        self.positions = Positions()
        self.problems: list[Diagnostic] = []
        self.budget = MAX_NODES
        self.scalars = yaml.constructor.SafeConstructor()

    def problem(self, node: yaml.Node, loc: Loc, message: str, hint: str = "") -> None:
        mark = _mark(node)
        self.problems.append(Diagnostic(self.path, mark.line, mark.col, format_loc(loc), message, hint))

    def convert(self, node: yaml.Node, loc: Loc) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise SpecError([_too_big(self.path, node)])
        self.positions.values.setdefault(loc, _mark(node))
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                self.problem(node, loc, f"unsupported yaml tag {node.tag}", "remove the tag")
            return [self.convert(item, (*loc, i)) for i, item in enumerate(node.value)]
        return self.scalar(node, loc)

    def scalar(self, node: yaml.Node, loc: Loc) -> Any:
        if node.tag not in _SAFE_SCALAR_TAGS:
            self.problem(
                node, loc, f"unsupported yaml tag {node.tag!s}", "tags that build objects are not allowed"
            )
            return None
        try:
            return self.scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError):
            # e.g. 2026-13-05: keep the text; validation then says what the field expects
            return node.value

    def mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        if node.tag != _MAP_TAG:
            self.problem(node, loc, f"unsupported yaml tag {node.tag}", "remove the tag")
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problem(key_node, loc, "merge keys (<<) are not supported", "write the keys out")
                continue
            key = self.scalar(key_node, loc) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "a collection"
                self.problem(
                    key_node, loc, f"keys must be strings, got {shown!r}", f'quote the key: "{shown}"'
                )
                continue
            child = (*loc, key)
            if key in result:
                first = self.positions.keys[child]
                self.problem(
                    key_node, child, "duplicate key", f"first defined at line {first.line}; keep one"
                )
                continue
            self.positions.keys[child] = _mark(key_node)
            result[key] = self.convert(value_node, child)
        return result


def _too_big(path: str, node: yaml.Node) -> Diagnostic:
    mark = _mark(node)
    return Diagnostic(
        path,
        mark.line,
        mark.col,
        "",
        f"document expands to more than {MAX_NODES} nodes",
        "aliases nest too deep (a yaml bomb?); write the values out",
    )


def format_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _decode(path: str, raw: bytes) -> str:
    if len(raw) > MAX_BYTES:
        raise SpecError([Diagnostic(path, 1, 1, "", f"file is larger than {MAX_BYTES} bytes")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        bad = raw[exc.start : exc.start + 1]
        raise SpecError(
            [Diagnostic(path, line, col, "", f"not valid utf-8: byte {bad!r}", "save the file as utf-8")]
        ) from None


def _syntax_error(path: str, exc: yaml.MarkedYAMLError) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    message = f"yaml syntax error: {exc.problem or exc.context}"
    hint = ""
    if "\\t" in str(exc.problem) or "tab" in str(exc.problem):
        hint = "indent with spaces, not tabs"
    elif exc.context:
        hint = str(exc.context)
    return Diagnostic(path, line, col, "", message, hint)


def parse_yaml(path: str, raw: bytes) -> YamlDocument:
    """Parse one YAML document; raise SpecError with every problem found."""
    text = _decode(path, raw)
    if not text.strip() or all(
        not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()
    ):
        raise SpecError([Diagnostic(path, 1, 1, "", "file is empty", "start from a file in project_configs/")])
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.composer.ComposerError as exc:
        raise SpecError([_syntax_error(path, exc)]) from None
    except yaml.MarkedYAMLError as exc:
        raise SpecError([_syntax_error(path, exc)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Diagnostic(path, 1, 1, "", f"yaml error: {exc}")]) from None
    if node is None:
        raise SpecError([Diagnostic(path, 1, 1, "", "file is empty")])
    converter = _Converter(path)
    data = converter.convert(node, ())
    if converter.problems:
        raise SpecError(converter.problems)
    return YamlDocument(path, data, converter.positions)


def read_yaml(path: Path | str) -> YamlDocument:
    shown = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SpecError([Diagnostic(shown, 1, 1, "", f"cannot read file: {exc.strerror}")]) from None
    return parse_yaml(shown, raw)
