"""Hostile strings, and the string fields of a model they go into: shared by the spec and the platform
string tests (tests/security/test_spec_strings.py, test_platform_strings.py)."""

from __future__ import annotations

import types
import typing
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

from dag_factory.spec.job import EnvironmentOverride

# Strings that mean something to Jinja, a shell, YAML or a terminal, and plain unicode.
FIXED = [
    '{{ "\x27; echo PWNED; #" }}',  # the issue's own: a Jinja expression that writes a shell quote
    "{{ conn.warehouse.password }}",
    "{{ 7 * 7 }}",
    "{% if true %}x{% endif %}",
    "{# note #}",
    "{{",
    "x}}y",
    "{x}",
    "$(touch ~/pwned)",  # these three create World.sentinel if any shell runs them
    "`touch ~/pwned`",
    "x'; touch ~/pwned; echo '",
    "${HOME}",
    "`id`",
    "it's",
    'say "hi"',
    "a;b|c&d",
    "a\nb",
    "tab\there",
    "back\\slash",
    "rtl\u202eoverride",
    "zero\u200bwidth",
    "line\u2028separator",
    "ünïcødé ✓ 中文",
    "x" * 300,
    " spaced out ",
    "-rf",
    "~root",
    "a*b?[c]",
    "%s %(x)s",
    "null",
]

hostile = st.one_of(
    st.sampled_from(FIXED),
    st.text(st.sampled_from([*"{}%#$`'\"\\;|&<>()*?[]~!\n\t ", "\u202e", "\u2028", "ü", "✓"]), max_size=12),
    st.builds(lambda a, b: a + b, st.sampled_from(["{{", "{%", "{#", "$(", "`", "'"]), st.text(max_size=10)),
    st.text(max_size=20),
)

# the strings that create World.sentinel when a shell runs them
SHELL_PROBES = [raw for raw in FIXED if "touch ~/pwned" in raw]


def _leaf_types(annotation: Any) -> list[Any]:
    """The types a field's values end in, through Annotated, unions, lists and dict values."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _leaf_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _leaf_types(arg)]
    if origin is list:
        return _leaf_types(typing.get_args(annotation)[0])
    if origin is dict:
        return _leaf_types(typing.get_args(annotation)[1])
    return [annotation]


def string_fields(model: type[BaseModel], seen: set[type] | None = None) -> set[str]:
    """Model.field for every field of every model under JobSpec that holds strings (ParamValue for
    parameter values, which may be any YAML data)."""
    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    found: set[str] = set()
    for name, info in model.model_fields.items():
        for kind in _leaf_types(info.annotation):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found |= string_fields(kind, seen)
            elif kind is str or str in map(type, typing.get_args(kind)):  # str, or a Literal of strings
                owner = next(m for m in model.__mro__ if name in getattr(m, "__annotations__", {}))
                found.add(f"{owner.__name__}.{name}")
            elif kind is Any and model is not EnvironmentOverride:  # overrides: checked once merged
                found.add("ParamValue")
    return found
