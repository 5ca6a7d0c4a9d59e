"""Read YAML into plain data while keeping where every key and value came from.

libyaml's C parser composes the node tree (fast, no objects constructed); we then turn nodes
into dicts/lists/scalars ourselves so that unsafe tags, duplicate keys, non-string keys and
alias bombs become located diagnostics instead of surprises. Before composing, one pass over the
parser's events checks depth and size: libyaml's composer recurses in C (tens of thousands of
nested brackets overflow the stack and kill the process) and its time grows with the square of
the depth, while the event pass can stop at the first level too deep.

The loader reads YAML 1.1 (PyYAML); editors read YAML 1.2. For plain scalars that are not plain
strings to both, `Positions` keeps the text as written, so hints quote it and `yaml_versions` can
flag the ones the two versions read differently.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dag_factory.errors import Diagnostic, SpecError

Loc = tuple[str | int, ...]

# Nodes a document may expand to through aliases; a billion-laughs file stops here, not in swap.
MAX_NODES = 50_000
MAX_BYTES = 2_000_000
# Nesting deeper than this is not a job spec (and would exhaust Python's recursion limit).
MAX_DEPTH = 100
_OPEN_EVENTS = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSE_EVENTS = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
_NODE_EVENTS = (yaml.ScalarEvent, yaml.AliasEvent, *_OPEN_EVENTS)

_SAFE_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
}
_VALUE_TAG = "tag:yaml.org,2002:value"  # YAML 1.1's plain `=`: a string to YAML 1.2 and to us
_MAP_TAG = "tag:yaml.org,2002:map"
_STANDARD_TAG_PREFIX = "tag:yaml.org,2002:"
_TAG_HINT = "remove the tag: yaml tags can build objects, so none are allowed"
_START_HINT = "start from a file in project_configs/"
_SEQ_TAG = "tag:yaml.org,2002:seq"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    col: int  # 1-based


# YAML 1.2's core schema: the plain scalars that are not strings, and what they are.
_CORE_12: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"(?:null|Null|NULL|~|)\Z"), lambda text: None),
    (re.compile(r"(?:true|True|TRUE)\Z"), lambda text: True),
    (re.compile(r"(?:false|False|FALSE)\Z"), lambda text: False),
    (re.compile(r"[-+]?[0-9]+\Z"), lambda text: int(text, 10)),
    (re.compile(r"0o[0-7]+\Z"), lambda text: int(text[2:], 8)),
    (re.compile(r"0x[0-9a-fA-F]+\Z"), lambda text: int(text[2:], 16)),
    (re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z"), float),
    (re.compile(r"[-+]?\.(?:inf|Inf|INF)\Z"), lambda text: -math.inf if text[0] == "-" else math.inf),
    (re.compile(r"\.(?:nan|NaN|NAN)\Z"), lambda text: math.nan),
)
_CORE_12_FIRST = set("0123456789+-.~nNtTfF")


def yaml12_value(text: str) -> Any:
    """What YAML 1.2 (editors, yaml-language-server) reads a plain scalar as."""
    if text and text[0] not in _CORE_12_FIRST:
        return text
    for pattern, convert in _CORE_12:
        if pattern.match(text):
            return convert(text)
    return text


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


@dataclass
class Positions:
    """Where each key (`keys`) and each value (`values`) sits, by its location in the data.

    `written`: the source text of plain scalars yaml did not read as a string (`0755`, `on`, dates);
    `yaml12`: plain scalars YAML 1.2 reads otherwise than this loader, with their text and 1.2 value.
    """

    keys: dict[Loc, Mark] = field(default_factory=dict)
    values: dict[Loc, Mark] = field(default_factory=dict)
    written: dict[Loc, str] = field(default_factory=dict)
    yaml12: dict[Loc, tuple[str, Any]] = field(default_factory=dict)

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


def _short_tag(tag: str) -> str:
    """`tag:yaml.org,2002:python/object` as written in the file: `!!python/object`."""
    return "!!" + tag.removeprefix(_STANDARD_TAG_PREFIX) if tag.startswith(_STANDARD_TAG_PREFIX) else tag


class _Converter:
    def __init__(self, path: str) -> None:
        self.path = path
        self.positions = Positions()
        self.problems: list[Diagnostic] = []
        self.budget = MAX_NODES
        self.scalars = yaml.constructor.SafeConstructor()
        self.resolver = yaml.resolver.Resolver()
        self.open: set[int] = set()  # collections being converted: an alias to one of them is a cycle

    def problem(self, node: yaml.Node, loc: Loc, message: str, hint: str = "") -> None:
        mark = _mark(node)
        self.problems.append(Diagnostic(self.path, mark.line, mark.col, format_loc(loc), message, hint))

    def convert(self, node: yaml.Node, loc: Loc) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise SpecError([_too_big(self.path, node)])
        if len(loc) > MAX_DEPTH:  # through aliases: the event pass counts what is written
            raise SpecError([_too_deep(self.path, node.start_mark)])
        self.positions.values.setdefault(loc, _mark(node))
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, loc)
        if id(node) in self.open:
            self.problem(node, loc, "recursive alias: a value contains itself", "write the values out")
            return None
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, loc)
            if node.tag != _SEQ_TAG:
                self.problem(node, loc, f"unsupported yaml tag {_short_tag(node.tag)}", _TAG_HINT)
            return [self.convert(item, (*loc, i)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def scalar(self, node: yaml.ScalarNode, loc: Loc, remember: bool = True) -> Any:
        if node.tag == _VALUE_TAG:
            return node.value
        if node.tag not in _SAFE_SCALAR_TAGS:
            self.problem(node, loc, f"unsupported yaml tag {_short_tag(node.tag)}", _TAG_HINT)
            return None
        try:
            value = self.scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError):
            # e.g. 2026-13-05: keep the text; validation then says what the field expects
            return node.value
        plain = remember and not node.style  # the C parser says "" for plain scalars
        if (
            plain
            and (not isinstance(value, str) or node.value[:1] in _CORE_12_FIRST)
            and self._implicit(node)
        ):
            self.remember_text(node.value, value, loc)  # untagged: read as its yaml version says
        return value

    def _implicit(self, node: yaml.ScalarNode) -> bool:
        resolved: str = self.resolver.resolve(yaml.ScalarNode, node.value, (True, False))  # type: ignore[no-untyped-call]
        return resolved == node.tag

    def remember_text(self, text: str, value: Any, loc: Loc) -> None:
        if not isinstance(value, str):
            self.positions.written[loc] = text
        if isinstance(value, dt.date):  # a string to 1.2, where the JSON Schema asks for a date string
            return
        other = yaml12_value(text)
        if not _same(value, other):
            self.positions.yaml12[loc] = (text, other)

    def mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        if node.tag != _MAP_TAG:
            self.problem(node, loc, f"unsupported yaml tag {_short_tag(node.tag)}", _TAG_HINT)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problem(key_node, loc, "merge keys (<<) are not supported", "write the keys out")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                message = "keys must be strings, got a collection"
                self.problem(key_node, loc, message, "use a plain name as the key")
                continue
            key = self.scalar(key_node, loc, remember=False)
            if not isinstance(key, str):
                if key_node.tag in _SAFE_SCALAR_TAGS:  # an unsafe tag was reported by scalar()
                    shown = key_node.value
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


def _check_expansion(path: str, root: yaml.Node) -> None:
    """Refuse a yaml bomb before expanding it: count nodes through aliases, each distinct node once.

    Points at the smallest collection that already expands past MAX_NODES.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if isinstance(node, yaml.ScalarNode) or key in active or depth > MAX_DEPTH:
            return 1  # cycles and deep nesting are reported while converting
        active.add(key)
        children = node.value if isinstance(node, yaml.SequenceNode) else [v for _, v in node.value]
        total = 1 + sum(size(child, depth + 1) for child in children)
        active.discard(key)
        if total > MAX_NODES:
            raise SpecError([_too_big(path, node)])
        sizes[key] = total
        return total

    size(root, 0)


def _too_big(path: str, node: yaml.Node) -> Diagnostic:
    mark = _mark(node)
    return Diagnostic(
        path,
        mark.line,
        mark.col,
        "",
        f"document expands to more than {MAX_NODES} nodes",
        "aliases repeat too much data, as in a yaml bomb; write the values out",
    )


def _too_deep(path: str, mark: Any) -> Diagnostic:
    message = f"nesting is deeper than {MAX_DEPTH} levels"
    return Diagnostic(path, mark.line + 1, mark.column + 1, "", message, "flatten the data")


def _check_shape(path: str, text: str) -> None:
    """Depth and size, from the parser's events before anything is composed (milliseconds: it stops
    at the first collection too deep or the first node too many)."""
    parser = _Loader(text)
    try:
        depth = nodes = 0
        while (event := parser.get_event()) is not None:
            if isinstance(event, _NODE_EVENTS):
                nodes += 1
                if nodes > MAX_NODES:
                    raise SpecError([_too_many(path, event.start_mark)])
            if isinstance(event, _OPEN_EVENTS):
                depth += 1
                if depth > MAX_DEPTH:
                    raise SpecError([_too_deep(path, event.start_mark)])
            elif isinstance(event, _CLOSE_EVENTS):
                depth -= 1
    finally:
        parser.dispose()


def _too_many(path: str, mark: Any) -> Diagnostic:
    message = f"document has more than {MAX_NODES} values"
    return Diagnostic(
        path, mark.line + 1, mark.column + 1, "", message, "a job spec is far smaller: split it"
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


def _char_at(text: str, line: int, col: int) -> str:
    """The character at a 1-based line and column, or ''."""
    lines = text.splitlines()
    if 1 <= line <= len(lines) and 1 <= col <= len(lines[line - 1]):
        return lines[line - 1][col - 1]
    return ""


# Errors the parser notices after the line that caused them: (message at the opening, problem text).
_OPENED = {
    "while parsing a flow sequence": ("the {char!r} opened here is not closed", "did not find expected"),
    "while parsing a flow mapping": ("the {char!r} opened here is not closed", "did not find expected"),
    "while scanning a quoted scalar": ("the {char} quote opened here is not closed", "unexpected end"),
    "while scanning a simple key": ("no ':' after this key", "could not find expected ':'"),
}


def _syntax_error(path: str, text: str, exc: yaml.MarkedYAMLError) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = str(exc.problem or exc.context or "invalid yaml")
    if "another document" in problem:
        message = "more than one yaml document in the file"
        return Diagnostic(path, line, col, "", message, "one spec per file: remove the '---' line")
    if _char_at(text, line, col) == "\t" or "tab" in problem:
        message = "yaml syntax error: tab character"
        return Diagnostic(path, line, col, "", message, "indent with spaces, not tabs")
    context = exc.context_mark
    opened = _OPENED.get(str(exc.context))
    if opened and context is not None and context.line != line - 1 and opened[1] in problem:
        # the line to fix is where the bracket, quote or key started; the parser noticed later
        what = opened[0].format(char=_char_at(text, context.line + 1, context.column + 1))
        hint = f"parsing stopped at line {line}, col {col}: {problem}"
        return Diagnostic(path, context.line + 1, context.column + 1, "", f"yaml syntax error: {what}", hint)
    hint = ""
    if exc.context and context is not None and (context.line, context.column) != (line - 1, col - 1):
        hint = f"{exc.context} started at line {context.line + 1}, col {context.column + 1}"
    elif exc.context:
        hint = str(exc.context)
    return Diagnostic(path, line, col, "", f"yaml syntax error: {problem}", hint)


def _reader_error(path: str, text: str, exc: yaml.reader.ReaderError) -> Diagnostic:
    """A character yaml does not allow (control characters): located from its offset."""
    before = text[: exc.position]
    line = before.count("\n") + 1
    col = exc.position - (before.rfind("\n") + 1) + 1
    char = exc.character if isinstance(exc.character, str) else chr(exc.character)
    message = f"character U+{ord(char):04X} is not allowed in yaml"
    return Diagnostic(path, line, col, "", message, "remove it or write it as an escape in a quoted string")


def parse_yaml(path: str, raw: bytes) -> YamlDocument:
    """Parse one YAML document; raise SpecError with every problem found."""
    text = _decode(path, raw)
    if not text.strip():
        raise SpecError([Diagnostic(path, 1, 1, "", "file is empty", _START_HINT)])
    try:
        _check_shape(path, text)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        raise SpecError([_syntax_error(path, text, exc)]) from None
    except yaml.reader.ReaderError as exc:
        raise SpecError([_reader_error(path, text, exc)]) from None
    except yaml.YAMLError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError([Diagnostic(path, 1, 1, "", f"yaml error: {message}")]) from None
    if node is None:
        raise SpecError([Diagnostic(path, 1, 1, "", "file holds no data, only comments", _START_HINT)])
    _check_expansion(path, node)
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
