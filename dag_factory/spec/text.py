"""The one rule for every string in a spec or platform file.

Spec values end up in Airflow's templated operator fields (SSH and bash commands, the deliver task's
arguments, e-mail notifiers) and in shell lines, so:

- no string may hold template syntax (`{{`, `{%`, `{#`): Airflow would evaluate it on the worker;
- a name or path (every string field not marked otherwise) may not hold a quote, a backtick, `$`, a
  backslash or a control, format or line-separator character: none of them is needed in a kernel, a
  conda env, a requirements file, a notebook path, a glob or a table name, and each means something
  to a shell;
- `PROSE` fields (a description) may hold any character but template syntax;
- `FREE` fields are checked elsewhere: parameter values by their own validator (any text, passed as
  base64), environment overrides once merged into the spec they override.

`StrictModel` applies the rule to every field of every model; `json_schema_for` says the same in the
JSON Schema. The messages say which character and why.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from dag_factory.spec.rules import Path, Violation

TEMPLATE_OPENERS = ("{{", "{%", "{#")
TEMPLATE = re.compile(r"\{[{%#]")
_SHELL = re.compile(r"['\"`$\\\x00-\x1f\x7f]")
_BAD_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}  # controls, format (bidi, zero-width), line breaks
_NAMED = {
    "'": "a single quote",
    '"': "a double quote",
    "`": "a backtick",
    "$": "'$'",
    "\\": "a backslash",
    "\n": "a line break",
    "\r": "a carriage return",
    "\t": "a tab",
}

TEMPLATE_HINT = "spec values are used as written, never rendered: write the value itself"
NAME_HINT = "names, paths and globs reach shell commands: no quotes, '$', backticks, backslashes or controls"

# The same rule for JSON Schema validators and editors (ECMA-262 regular expressions).
SCHEMA_NO_TEMPLATE = "\\{[{%#]"
SCHEMA_NAME_CHARACTERS = (
    "^[^'\"`$\\\\\\u0000-\\u001f\\u007f-\\u009f\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2064\\ufeff]*$"
)


@dataclass(frozen=True)
class StringRule:
    """Annotated metadata choosing the rule for a field's strings (the default is NAME)."""

    kind: Literal["name", "prose", "free"]


NAME = StringRule("name")
PROSE = StringRule("prose")
FREE = StringRule("free")


def shown(text: str) -> str:
    quoted = repr(text)
    return quoted if len(quoted) <= 60 else quoted[:57] + "..."


def _describe(char: str) -> str:
    return _NAMED.get(char) or f"the character U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')})"


def _name_character(text: str) -> str | None:
    """The first character a name or path may not hold, or None."""
    match = _SHELL.search(text)
    if match:
        return match.group()
    if not text.isascii():
        return next((c for c in text if unicodedata.category(c) in _BAD_CATEGORIES), None)
    return None


def text_problem(text: str, rule: StringRule) -> tuple[str, str] | None:
    """(message, hint) when text breaks the rule, else None."""
    if rule is FREE:
        return None
    template = TEMPLATE.search(text)
    if template:
        return f"{shown(text)} holds template syntax {template.group()!r}", TEMPLATE_HINT
    if rule is PROSE:
        return None
    char = _name_character(text)
    if char is not None:
        return f"{shown(text)} holds {_describe(char)}, which no name or path needs", NAME_HINT
    return None


# Nothing a rule refuses: no '{', no shell character, ASCII only (most values: a quick first look).
_SURELY_FINE = re.compile(r"[^{'\"`$\\\x00-\x1f\x7f-\U0010ffff]*\Z")


def may_break_a_rule(value: Any) -> bool:
    """False when value certainly holds nothing any rule refuses (fast: one regex per string)."""
    if isinstance(value, str):
        return _SURELY_FINE.match(value) is None
    if isinstance(value, list | tuple):
        return any(map(may_break_a_rule, value))
    if isinstance(value, dict):
        return any(map(may_break_a_rule, value)) or any(map(may_break_a_rule, value.values()))
    return False


def violations(value: Any, rule: StringRule, loc: Path = ()) -> Iterator[Violation]:
    """Every string in value (through lists and mappings, keys included) that breaks the rule."""
    if isinstance(value, str):
        problem = text_problem(value, rule)
        if problem is not None:
            yield Violation(loc, *problem, value=value)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from violations(item, rule, (*loc, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (problem := text_problem(key, rule)) is not None:
                yield Violation((*loc, key), *problem, value=key, key=True)
            yield from violations(item, rule, (*loc, key))


def _constrain(schema: dict[str, Any], rule: StringRule) -> None:
    """Add the rule to every string schema in a field's schema (not into referenced models)."""
    # A field's own pattern is a whitelist unless it has a negated class ("[^"): leave whitelists be.
    permissive = "[^" in schema.get("pattern", "[^")
    if schema.get("type") == "string" and permissive and not ({"enum", "const"} & set(schema)):
        schema.setdefault("not", {"pattern": SCHEMA_NO_TEMPLATE})
        if rule is NAME and "pattern" in schema:  # one pattern keyword per schema object
            schema.setdefault("allOf", []).append({"pattern": SCHEMA_NAME_CHARACTERS})
        elif rule is NAME:
            schema["pattern"] = SCHEMA_NAME_CHARACTERS
    for key in ("anyOf", "oneOf"):
        for option in schema.get(key, []):
            _constrain(option, rule)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _constrain(schema[key], rule)
    for inner in schema.get("patternProperties", {}).values():
        _constrain(inner, rule)


def constrain_schema(properties: dict[str, Any], rules: dict[str, StringRule]) -> None:
    """The string rule in a model's JSON Schema, property by property."""
    for name, schema in properties.items():
        rule = rules.get(name, NAME)
        if rule is not FREE:
            _constrain(schema, rule)
