"""Parameters cells of the other languages papermill injects into, read as simple assignments.

papermill can inject parameters into R, Julia, Scala, Matlab, C#, F#, PowerShell and bash kernels
(its translators write `name = value` in the kernel's language) but can only inspect Python cells.
This reader knows just enough of each language to read the assignments a parameters cell is made
of: `n <- 10L` / `msg = "hi"` in R, `n::Int = 10` in Julia, `val n = 10` in Scala, `$n = 10` in
PowerShell, `n=10` in bash: the name, the default as written, and its type where that is clear (a
literal, or a written type). A statement that assigns something in another way (`x[1] <- 2`,
`if (a) x <- 1`) is reported as unread, never guessed; calls such as `library(dplyr)` declare
nothing and are skipped.
"""

from __future__ import annotations

import ast
import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dag_factory.validate.declared import (
    CellReading,
    Declared,
    Unread,
    kind_of_type,
    literal_json,
    one_line,
)

_CONTINUES = (",", "+", "-", "*", "/", "=", "<-", "->", "=>", "&&", "||", "|>", "%>%", "\\", "...", "(")
_OPERATOR = r"(?<![=!<>:])=(?![=>])"  # an assignment `=`, not ==, <=, >=, !=, =>, :=


@dataclass(frozen=True)
class Syntax:
    """What the reader needs to know of one language."""

    language: str
    assign: re.Pattern[str]  # a whole statement: groups name, value, optional type
    assigns: re.Pattern[str]  # an assignment somewhere in a statement the pattern did not read
    comments: tuple[str, ...] = ("#",)
    block_comment: tuple[str, str] | None = None
    quotes: str = "\"'"
    true: tuple[str, ...] = ("true",)
    false: tuple[str, ...] = ("false",)
    null: tuple[str, ...] = ()
    whole: str | None = "int"  # the kind of `10`: int, number (a double), None (untyped)
    fraction: str | None = "float"  # the kind of `1.5`
    int_suffixes: tuple[str, ...] = ()  # `10L`
    sequences: dict[str, str] = field(default_factory=dict)  # opener -> closer
    pairs: tuple[str, ...] = ()  # key-value operators inside a sequence: a mapping
    separators: tuple[str, ...] = (",",)  # between items; "" allows juxtaposed items


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text, re.DOTALL)


_NAME = r"(?P<name>[A-Za-z_][\w]*)"
_VALUE = r"\s*(?P<value>.+)$"
_ASSIGN = _OPERATOR + _VALUE

SYNTAXES: dict[str, Syntax] = {
    "r": Syntax(
        "R",
        _pattern(r"^(?P<name>[A-Za-z.][\w.]*)\s*(?:<<-|<-|" + _OPERATOR + ")" + _VALUE),
        _pattern(r"<<-|<-|->|" + _OPERATOR),
        true=("TRUE", "T"),
        false=("FALSE", "F"),
        null=("NULL", "NA"),
        whole="number",
        fraction="number",
        int_suffixes=("L",),
        sequences={"c(": ")", "list(": ")"},
        pairs=("=",),
    ),
    "julia": Syntax(
        "Julia",
        _pattern(r"^(?:(?:const|global|local)\s+)?" + _NAME + r"\s*(?:::\s*(?P<type>[^=]+?))?\s*" + _ASSIGN),
        _pattern(_OPERATOR),
        block_comment=("#=", "=#"),
        quotes='"',
        null=("nothing", "missing"),
        sequences={"[": "]", "Dict(": ")", "(": ")"},
        pairs=("=>",),
    ),
    "scala": Syntax(
        "Scala",
        _pattern(r"^(?:(?:lazy\s+)?val|var)\s+" + _NAME + r"\s*(?::\s*(?P<type>[^=]+?))?\s*" + _ASSIGN),
        _pattern(_OPERATOR),
        comments=("//",),
        block_comment=("/*", "*/"),
        quotes='"',
        int_suffixes=("L",),
        sequences={"Seq(": ")", "List(": ")", "Array(": ")", "Vector(": ")", "Map(": ")"},
        pairs=("->",),
    ),
    "matlab": Syntax(
        "Matlab",
        _pattern(r"^" + _NAME + r"\s*" + _OPERATOR + _VALUE),
        _pattern(_OPERATOR),
        comments=("%",),
        block_comment=("%{", "%}"),
        null=("NaN",),
        whole="number",
        fraction="number",
        sequences={"{": "}", "[": "]"},
        separators=(",", ""),
    ),
    "csharp": Syntax(
        "C#",
        _pattern(
            r"^(?:(?:const|static|readonly)\s+)*(?:var|(?P<type>[A-Za-z_][\w.<>\[\],?]*))\s+"
            + _NAME + r"\s*" + _OPERATOR + _VALUE
        ),
        _pattern(_OPERATOR),
        comments=("//",),
        block_comment=("/*", "*/"),
        quotes='"',
        null=("null",),
        int_suffixes=("L",),
    ),
    "fsharp": Syntax(
        "F#",
        _pattern(r"^let\s+(?:mutable\s+)?" + _NAME + r"\s*(?::\s*(?P<type>[^=]+?))?\s*" + _OPERATOR + _VALUE),
        _pattern(r"<-|" + _OPERATOR),
        comments=("//",),
        block_comment=("(*", "*)"),
        quotes='"',
        null=("None",),
        int_suffixes=("L",),
        sequences={"[": "]"},
        separators=(";",),
    ),
    "powershell": Syntax(
        "PowerShell",
        _pattern(r"^(?:\[(?P<type>[\w.\[\]]+)\]\s*)?\$" + _NAME + r"\s*" + _OPERATOR + _VALUE),
        _pattern(_OPERATOR),
        block_comment=("<#", "#>"),
        true=("$True",),
        false=("$False",),
        null=("$Null",),
        sequences={"@(": ")", "@{": "}"},
        pairs=("=",),
        separators=(",", ";"),
    ),
    "bash": Syntax(
        "bash",
        _pattern(r"^(?:(?:export|readonly|local|declare(?:\s+-\w+)*)\s+)?" + _NAME + r"=(?P<value>.*)$"),
        _pattern(r"^\S+="),
        true=(),
        false=(),
        whole=None,
        fraction=None,
        sequences={"(": ")"},
        separators=("",),
    ),
}  # fmt: skip


@dataclass
class _Statement:
    line: int  # 1-based, where it starts
    code: str = ""
    comment: str = ""  # of its last line


def _starts(text: str, i: int, options: tuple[str, ...]) -> str:
    return next((o for o in options if o and text.startswith(o, i)), "")


def _statements(source: str, syntax: Syntax) -> Iterator[_Statement]:
    """The cell's statements: comments out, continued lines joined, `;` and line ends split them."""
    current, depth, quote, i, line = _Statement(1), 0, "", 0, 1
    block = syntax.block_comment
    while i < len(source):
        ch = source[i]
        if quote:
            current.code += ch
            if ch == "\\" and syntax.language != "bash" and i + 1 < len(source):
                current.code += source[i + 1]
                i += 1
            elif ch == quote:
                quote = ""
            line += ch == "\n"
            i += 1
            continue
        if block and source.startswith(block[0], i):
            end = source.find(block[1], i + len(block[0]))
            end = len(source) if end < 0 else end + len(block[1])
            line += source.count("\n", i, end)
            i = end
            continue
        if _starts(source, i, syntax.comments):
            end = source.find("\n", i)
            end = len(source) if end < 0 else end
            current.comment = source[i:end].lstrip("#%/ ").strip()
            i = end
            continue
        ends = ch == ";" or (ch == "\n" and not current.code.rstrip().endswith(_CONTINUES))
        if ends and depth == 0:
            yield current
            current = _Statement(line)
        else:
            if not current.code.strip():
                current.line = line
            current.code += " " if ch == "\n" else ch
            quote = ch if ch in syntax.quotes else ""
            depth = depth + 1 if ch in "([{" else max(0, depth - 1) if ch in ")]}" else depth
        line += ch == "\n"
        i += 1
    yield current


_TOKEN = re.compile(
    r"""\s*(?:
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<number>[+-]?(?:0[xX][0-9a-fA-F]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?)[A-Za-z]?)(?![\w.])
    |(?P<word>\$?[A-Za-z_.][\w.]*(?:\(|\{)?|@[({])
    |(?P<punct>=>|->|[=,;()\[\]{}])
    )""",
    re.VERBOSE,
)


class _NotLiteral(Exception):
    pass


class _Literal:
    """A literal in one language, as the Python value papermill would pass for it."""

    def __init__(self, text: str, syntax: Syntax) -> None:
        self.syntax = syntax
        self.kind: str | None = None
        self.tokens: list[str] = []
        pos, text = 0, text.strip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise _NotLiteral
            self.tokens.append(match.group().strip())
            pos = match.end()
        self.pos = 0

    def value(self) -> tuple[Any, str | None]:
        value, kind = self._value()
        if self.pos != len(self.tokens):
            raise _NotLiteral
        return value, kind

    def _next(self) -> str:
        if self.pos >= len(self.tokens):
            raise _NotLiteral
        self.pos += 1
        return self.tokens[self.pos - 1]

    def _number(self, token: str) -> tuple[Any, str | None]:
        syntax = self.syntax
        suffix = token[-1] if token[-1].isalpha() and not token.lower().startswith(("0x", "-0x")) else ""
        digits = token[: len(token) - len(suffix)].replace("_", "")
        if suffix and suffix not in syntax.int_suffixes:
            raise _NotLiteral
        if suffix or re.fullmatch(r"[+-]?(0[xX][0-9a-fA-F]+|\d+)", digits):
            whole = int(digits, 0) if "x" in digits.lower() else int(digits)
            return whole, "int" if suffix else syntax.whole
        return float(digits), syntax.fraction

    def _value(self) -> tuple[Any, str | None]:
        token, syntax = self._next(), self.syntax
        if token[0] in "\"'":
            try:
                text = ast.literal_eval(token)
            except (ValueError, SyntaxError):
                text = token[1:-1]
            return text, "string" if syntax.whole is not None else None
        if re.match(r"[+-]?[\d.]", token):
            return self._number(token)
        if token in syntax.true or token in syntax.false:
            return token in syntax.true, "bool"
        if token in syntax.null:
            return None, None
        if token in syntax.sequences:
            return self._sequence(syntax.sequences[token])
        if syntax.whole is None and re.fullmatch(r"[\w./:-]+", token):  # bash: a bare word is text
            return token, None
        raise _NotLiteral

    def _peek(self) -> str:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ""

    def _sequence(self, closer: str) -> tuple[Any, str | None]:
        keys: list[Any] = []
        items: list[Any] = []
        while self._peek() != closer:
            if items:
                if self._peek() in self.syntax.separators:
                    self.pos += 1
                elif "" not in self.syntax.separators:
                    raise _NotLiteral
                if self._peek() == closer:  # a trailing separator
                    break
            keys.append(self._key())
            items.append(self._value()[0])
        self.pos += 1
        if keys and all(k is not None for k in keys):
            return dict(zip(keys, items, strict=True)), "dict"
        if any(k is not None for k in keys):
            raise _NotLiteral
        return items, "list"

    def _key(self) -> Any:
        """`name =` / `"k" =>` before an item, when the language has key-value pairs."""
        at = self.pos
        if self.syntax.pairs and at + 1 < len(self.tokens) and self.tokens[at + 1] in self.syntax.pairs:
            key = self.tokens[at]
            self.pos += 2
            if key[0] in "\"'":
                return ast.literal_eval(key)
            if re.fullmatch(r"[A-Za-z_.][\w.]*", key):
                return key
            raise _NotLiteral
        return None


def _declared(statement: _Statement, match: re.Match[str], syntax: Syntax) -> Declared:
    value_text = match.group("value").strip()
    type_name = (match.groupdict().get("type") or "").strip()
    kind = kind_of_type(type_name) if type_name else None
    literal: tuple[Any, str | None] | None = None
    with contextlib.suppress(_NotLiteral, ValueError, SyntaxError):
        literal = _Literal(value_text, syntax).value()
    if kind is None and literal is not None:
        kind = literal[1]
    return Declared(
        name=match.group("name"),
        default=value_text,
        kind=kind,
        type_name=type_name,
        line=statement.line,
        help=statement.comment,
        value=literal_json(literal[0]) if literal is not None else None,
    )


def read_assignments(source: str, syntax: Syntax) -> CellReading:
    """The parameters a parameters cell in `syntax`'s language declares (see the module docstring)."""
    found = CellReading()
    for statement in _statements(source, syntax):
        code = statement.code.strip().rstrip(";").strip()
        if not code:
            continue
        match = syntax.assign.match(code)
        if match:
            found.parameters.append(_declared(statement, match, syntax))
        elif syntax.assigns.search(_outside_brackets(code)):
            found.unread.append(Unread(statement.line, one_line(code), "not a simple assignment"))
    return found


def _outside_brackets(code: str) -> str:
    """The statement with strings and bracketed parts blanked: `f(a = 1)` names an argument."""
    code = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', code)
    previous = None
    while previous != code:
        previous = code
        code = re.sub(r"\([^()]*\)|\[[^\[\]]*\]", "()", code)
    return code
