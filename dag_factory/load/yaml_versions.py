"""YAML 1.1 (this loader) and YAML 1.2 (editors, yaml-language-server, most other tools) read some
plain scalars differently: `no`, `on`, `yes`, `off` are booleans in 1.1 and strings in 1.2; `0755`
is 493 in 1.1 and 755 in 1.2; `1:30` is 90 in 1.1 and a string in 1.2; `1e3` is a string in 1.1 and
a number in 1.2. Wherever such a scalar is taken as it is (a string field given a 1.1 string, a
boolean field given a 1.1 boolean, any parameter value), the file means two things at once: flag it,
with the unambiguous spelling as the fix. (Where 1.1 reads a type the field refuses, validation
already says so, quoting the scalar as written.)
"""

from __future__ import annotations

import datetime as dt
import typing
from typing import Any

from pydantic import BaseModel

from dag_factory.errors import Diagnostic
from dag_factory.load.diagnose import step_types
from dag_factory.load.yaml_source import Loc, YamlDocument, format_loc
from dag_factory.spec.job import EnvironmentOverride, JobSpec

# Overrides are typed Any; what they override is typed in JobSpec.
_OVERRIDES: dict[type[BaseModel], type[BaseModel]] = {EnvironmentOverride: JobSpec}


def _types_at(root: type[BaseModel], loc: Loc) -> list[Any]:
    candidates: list[Any] = [root]
    for part in loc:
        if any(c is Any for c in candidates):
            return [Any]  # inside free data (a parameter value): any type goes
        candidates = [_OVERRIDES.get(c, c) if isinstance(c, type) else c for c in candidates]
        candidates = step_types(candidates, part)
    return candidates


def _accepts(candidates: list[Any], value: Any) -> bool:
    for kind in candidates:
        if kind is Any:
            return True
        if typing.get_origin(kind) is typing.Literal:
            if value in typing.get_args(kind):
                return True
            continue
        if not isinstance(kind, type):
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return True
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return True
    return False


def _meaning(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dt.date):
        return "a date"
    return f"the number {value!r}"


def _spelling(value: Any, text: str, yaml12: Any, free: bool) -> str:
    """How to write what this loader read so that both versions read the same (for a parameter, which
    takes any type, also how to write what an editor read)."""
    if isinstance(value, str):
        number = f", or write {yaml12!r} for the number" if free and isinstance(yaml12, int | float) else ""
        return f'quote it: "{text}"{number}'
    canonical = "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)
    return f'write {canonical}, or quote it for the text: "{text}"' if free else f"write {canonical}"


def version_problems(doc: YamlDocument, root: type[BaseModel]) -> list[Diagnostic]:
    """One diagnostic per plain scalar that YAML 1.1 and 1.2 read differently, where it is taken as
    this loader read it."""
    found = []
    for loc, (text, yaml12) in doc.positions.yaml12.items():
        value = _value_at(doc.data, loc)
        types = _types_at(root, loc)
        if not _accepts(types, value):
            continue  # a wrong type: validation reports it, quoting the text
        mark = doc.positions.of_value(loc)
        ours, theirs = _meaning(value), _meaning(yaml12)
        message = f"{text} means {ours} to dag-factory (yaml 1.1), {theirs} to editors (yaml 1.2)"
        hint = _spelling(value, text, yaml12, Any in types)
        found.append(Diagnostic(doc.path, mark.line, mark.col, format_loc(loc), message, hint))
    return found


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data
