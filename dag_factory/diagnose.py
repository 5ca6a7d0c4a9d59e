"""Turn pydantic's validation errors into located, human diagnostics with fixes."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from dag_factory.errors import Diagnostic
from dag_factory.yaml_source import Loc, Positions, format_loc

# Hints for pattern errors, by the name of the field that failed.
PATTERN_HINTS = {
    "project": "use lowercase letters, digits and '-', at most 40 characters",
    "values": "use letters, digits, '-' and '_' (they become task ids and S3 paths)",
    "instance_type": "use a SageMaker type such as ml.t3.medium",
    "table": "use NAME, SCHEMA.NAME or DB.SCHEMA.NAME",
    "stage": "use NAME, SCHEMA.NAME or DB.SCHEMA.NAME",
    "retry_delay": "use e.g. 90s, 30m, 4h or 1h30m",
    "timeout": "use e.g. 90s, 30m, 4h or 1h30m",
    "papermill_version": "use a version such as 2.7.0",
    "conda_env": "use letters, digits, '.', '_' and '-'",
    "account_id": "use the 12-digit account id, quoted",
}
_DISCRIMINATORS = {"to": "delivery target", "backend": "backend"}
_YAML_BOOLS = {True: "yes/true/on", False: "no/false/off"}


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    """A did-you-mean hint, or the list of choices when nothing is close."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"expected one of: {', '.join(options)}" if options else ""


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types behind Annotated / Optional / unions."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(tp) for t in _unwrap(arg) if t is not type(None)]
    return [tp]


def _step(candidates: list[Any], part: str | int) -> list[Any]:
    out: list[Any] = []
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    tagged = [m for m in models if any(part in typing.get_args(f.annotation) for f in m.model_fields.values())]
    if tagged and len(models) > 1:
        return tagged  # a discriminated union: the loc names the member
    for tp in candidates:
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = tp.model_fields.get(part)
            if field is not None:
                out.extend(_unwrap(field.annotation))
        elif origin is list and isinstance(part, int):
            out.extend(_unwrap(typing.get_args(tp)[0]))
        elif origin is dict and isinstance(part, str):
            out.extend(_unwrap(typing.get_args(tp)[1]))
    return out


def allowed_keys(root: type[BaseModel], raw_loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model that holds the last element of raw_loc."""
    candidates: list[Any] = [root]
    for part in raw_loc[:-1]:
        candidates = _step(candidates, part)
    keys: set[str] = set()
    for tp in candidates:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            keys.update(tp.model_fields)
    return sorted(keys)


def data_loc(data: Any, raw_loc: tuple[Any, ...]) -> tuple[Loc, bool]:
    """Map pydantic's loc onto the data, dropping union tags; True when it ends on a dict key."""
    loc: list[str | int] = []
    current = data
    for i, part in enumerate(raw_loc):
        last = i == len(raw_loc) - 1
        if part == "[key]":
            return tuple(loc), True
        if isinstance(current, dict) and part in current:
            loc.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            loc.append(part)
            current = current[part]
        elif last:
            loc.append(part)
        # otherwise: a union tag or validator name that has no place in the data
    return tuple(loc), False


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error: Any, root: type[BaseModel], loc: Loc) -> tuple[str, str]:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    field = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if kind == "missing":
        return f"missing required key {loc[-1]!r}", f"add {loc[-1]}: to this mapping"
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}", suggest(str(loc[-1]), allowed_keys(root, error["loc"]))
    if kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        what = _DISCRIMINATORS.get(str(ctx.get("discriminator", "")).strip("'"), "kind")
        return f"unknown {what} {ctx.get('tag')!r}", suggest(
            str(ctx.get("tag")), tags
        )
    if kind == "union_tag_not_found":
        return f"missing required key {ctx.get('discriminator', '').strip(chr(39))!r}", ""
    if kind == "literal_error":
        options = [o.strip(" '") for o in str(ctx.get("expected", "")).replace(" or ", ",").split(",")]
        return f"invalid value {_shown(value)}", suggest(str(value), [o for o in options if o])
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {_shown(value)}", "write key: value pairs under this key"
    if kind == "list_type":
        return f"expected a list, got {_shown(value)}", "write items as '- item' lines or [a, b]"
    if kind == "string_type" and isinstance(value, bool):
        spelled = _YAML_BOOLS[value]
        return (
            f"expected a string, got boolean {value}",
            f"yaml reads unquoted {spelled} as a boolean; quote it, e.g. \"no\"",
        )
    if kind == "string_pattern_mismatch":
        return f"invalid value {_shown(value)}", PATTERN_HINTS.get(field, f"must match {ctx.get('pattern')}")
    if kind in ("date_type", "date_parsing", "date_from_datetime_parsing", "date_from_datetime_inexact"):
        return f"invalid date {_shown(value)}", "use YYYY-MM-DD"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    message = message[:1].lower() + message[1:]
    if kind != "value_error" and not isinstance(value, dict | list):
        message += f", got {_shown(value)}"
    return message, PATTERN_HINTS.get(field, "") if kind == "value_error" and "duration" in message else ""


def diagnose(
    exc: ValidationError,
    root: type[BaseModel],
    data: Any,
    path: str,
    positions: Positions,
    prefix: Loc = (),
) -> list[Diagnostic]:
    """One diagnostic per pydantic error, located in the YAML file."""
    found = []
    for error in exc.errors():
        loc, on_key = data_loc(data, error["loc"])
        message, hint = _describe(error, root, loc if not on_key else (*loc, "[key]"))
        if on_key:
            bad_key = error.get("input")
            if isinstance(bad_key, str) and loc[-1:] != (bad_key,):
                loc = (*loc, bad_key)
            message = f"invalid name {_shown(bad_key)}"
            hint = "use a python identifier: letters, digits and '_', not starting with a digit or a keyword"
        if error["type"] == "missing":
            mark = positions.of_key(loc[:-1]) if loc[:-1] else positions.of_value(())
        elif error["type"] == "extra_forbidden" or on_key:
            mark = positions.of_key(loc)
        else:
            mark = positions.of_value(loc)
        found.append(Diagnostic(path, mark.line, mark.col, format_loc((*prefix, *loc)), message, hint))
    return found
