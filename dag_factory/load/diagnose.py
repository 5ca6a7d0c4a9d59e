"""Turn pydantic's validation errors into located, human diagnostics with fixes.

Every error is placed by its path in the data (pydantic's `loc`; rules over several values raise
`spec.rules` errors carrying the path of the entry they mean), never by searching the file's text.
Values are shown as written in the file (`0755`, `on`, `2026-01-05`), from `Positions.written`.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from dag_factory.errors import Diagnostic, did_you_mean, suggest
from dag_factory.load.yaml_source import Loc, Positions, format_loc
from dag_factory.spec.rules import KEY, RULE_ERROR

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
    "on_failure": "use an email address such as team@example.com",
    "on_retry": "use an email address such as team@example.com",
    "prefix": "use path segments of letters, digits, '_', '.', '=' and '-', e.g. exports/scores",
    "name": "use a python identifier: letters, digits and '_', not starting with a digit",
    "region": "use an AWS region such as eu-west-1",
    "role_arn": "use arn:aws:iam::<12-digit account>:role/<name>",
    "subnet_id": "use a subnet id such as subnet-0a1b2c3d",
    "security_group_ids": "use security group ids such as sg-0a1b2c3d",
    "code": "use an S3 bucket name: lowercase letters, digits, '.' and '-'",
    "data": "use an S3 bucket name: lowercase letters, digits, '.' and '-'",
    "intermediate": "use an S3 bucket name: lowercase letters, digits, '.' and '-'",
    "output": "use an S3 bucket name: lowercase letters, digits, '.' and '-'",
    "allowed_instance_types": "use a SageMaker type such as ml.t3.medium",
}
_IDENTIFIER_HINT = "use a python identifier: letters, digits and '_', not starting with a digit or a keyword"
_DISCRIMINATORS = {"to": "delivery target", "backend": "backend"}
_NUMBER_TYPES = {"int_type": int, "float_type": float}
_DATE_ERRORS = ("date_type", "date_parsing", "date_from_datetime_parsing", "date_from_datetime_inexact")


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types behind Annotated / Optional / unions."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(tp) for t in _unwrap(arg) if t is not type(None)]
    return [tp]


def step_types(candidates: list[Any], part: str | int) -> list[Any]:
    """The types one step further into the data: a model's field, a list's items, a dict's values."""
    out: list[Any] = []
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    tagged = [
        m for m in models if any(part in typing.get_args(f.annotation) for f in m.model_fields.values())
    ]
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
        candidates = step_types(candidates, part)
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
        in_dict = isinstance(current, dict) and part in current
        if in_dict or (isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)):
            loc.append(part)
            current = current[part]
        elif last:
            loc.append(part)
        # otherwise: a union tag or validator name that has no place in the data
    return tuple(loc), False


def _shown(value: Any, written: str | None = None) -> str:
    if written is not None:
        return written
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_as(value: Any) -> str:
    """What yaml made of a plain scalar that is not a string, in words."""
    if value is None:
        return "null (no value)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return "a date and time" if isinstance(value, dt.datetime) else "a date"


def discriminator_values(root: type[BaseModel], raw_loc: tuple[Any, ...], discriminator: str) -> list[str]:
    """The tags a discriminated union at raw_loc accepts, e.g. the delivery targets for `to`."""
    candidates: list[Any] = [root]
    for part in raw_loc:
        candidates = step_types(candidates, part)
    tags: set[str] = set()
    for tp in candidates:
        if isinstance(tp, type) and issubclass(tp, BaseModel) and discriminator in tp.model_fields:
            annotation = tp.model_fields[discriminator].annotation
            tags.update(str(a) for a in typing.get_args(annotation))
    return sorted(tags)


def _parses_as(text: str, kind: type) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def _describe_shape(kind: str, value: Any, loc: Loc, written: str | None) -> tuple[str, str] | None:
    """Wrong container or scalar type: what was found and how to write what is expected."""
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        where = "under this key" if loc else "one per line, e.g. version: 1"
        return f"expected a mapping, got {_shown(value)}", f"write key: value pairs {where}"
    if kind == "list_type":
        return f"expected a list, got {_shown(value)}", "write items as '- item' lines or [a, b]"
    if kind == "string_type" and written is not None:  # a plain scalar yaml read as something else
        reads = _read_as(value)
        got = (
            reads if reads.endswith(f" {written}") else f"{written or 'nothing'}, which yaml reads as {reads}"
        )
        return f"expected a string, got {got}", f'quote it: "{written}"' if written else "write a value"
    if kind == "string_type" and isinstance(value, int | float | bool | dt.date):
        return f"expected a string, got {_read_as(value)}", f'quote it: "{value}"'
    number = _NUMBER_TYPES.get(kind)
    if number is not None and isinstance(value, str) and _parses_as(value, number):
        return f"expected a number, got the string {_shown(value)}", "remove the quotes"
    return None


def _describe_size(kind: str, ctx: dict[str, Any]) -> tuple[str, str] | None:
    if kind == "too_short":
        least = ctx.get("min_length")
        got = ctx.get("actual_length")
        return f"expected at least {least} item{'' if least == 1 else 's'}, got {got}", ""
    if kind == "too_long":
        most = ctx.get("max_length")
        got = ctx.get("actual_length")
        return f"expected at most {most} item{'' if most == 1 else 's'}, got {got}", ""
    return None


def _describe(error: Any, root: type[BaseModel], loc: Loc, written: str | None) -> tuple[str, str]:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    field = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if kind == RULE_ERROR and ctx.get("quote") and written:
        return (
            f"{ctx['message']}, got {written}, which yaml reads as {_read_as(value)}",
            f'quote it: "{written}"',
        )
    if kind == RULE_ERROR:
        return str(ctx["message"]), str(ctx.get("hint", ""))
    if kind == "missing":
        return f"missing required key {loc[-1]!r}", f"add {loc[-1]}: to this mapping"
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}", suggest(str(loc[-1]), allowed_keys(root, error["loc"]))
    if kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        what = _DISCRIMINATORS.get(str(ctx.get("discriminator", "")).strip("'"), "kind")
        return f"unknown {what} {ctx.get('tag')!r}", suggest(str(ctx.get("tag")), tags)
    if kind == "union_tag_not_found":
        key = str(ctx.get("discriminator", "")).strip("'")
        tags = discriminator_values(root, tuple(error["loc"]), key)
        return f"missing required key {key!r}", f"add {key}: with one of: {', '.join(tags)}" if tags else ""
    if kind == "literal_error":
        options = [o.strip(" '") for o in str(ctx.get("expected", "")).replace(" or ", ",").split(",")]
        return f"invalid value {_shown(value, written)}", suggest(str(value), [o for o in options if o])
    shape = _describe_shape(kind, value, loc, written) or _describe_size(kind, ctx)
    if shape is not None:
        return shape
    if kind == "string_pattern_mismatch":
        return f"invalid value {_shown(value)}", PATTERN_HINTS.get(field, f"must match {ctx.get('pattern')}")
    if kind in _DATE_ERRORS:
        return f"invalid date {_shown(value, written)}", "use YYYY-MM-DD"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    message = message[:1].lower() + message[1:]
    scalar = not isinstance(value, dict | list)
    if scalar and (kind != "value_error" or str(value) not in message):
        message += f", got {_shown(value, written)}"
    return message, PATTERN_HINTS.get(field, "") if kind == "value_error" and "duration" in message else ""


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def _value_at_or_none(data: Any, loc: Loc) -> Any:
    try:
        return _value_at(data, loc)
    except (KeyError, IndexError, TypeError):
        return None


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
        written = None if on_key else positions.written.get(loc)
        message, hint = _describe(error, root, loc if not on_key else (*loc, KEY), written)
        if on_key:
            bad_key = error.get("input")
            if isinstance(bad_key, str) and loc[-1:] != (bad_key,):
                loc = (*loc, bad_key)
            if error["type"] != RULE_ERROR:  # pydantic's own check of the key type: a parameter name
                message, hint = f"invalid name {_shown(bad_key)}", _IDENTIFIER_HINT
        tag_key = str((error.get("ctx") or {}).get("discriminator", "")).strip("'")
        if error["type"] == "union_tag_invalid" and isinstance(_value_at_or_none(data, loc), dict):
            loc = (*loc, tag_key)  # point at the bad tag itself, e.g. `to: snowflak`
        if error["type"] == "missing":
            mark = positions.of_key(loc[:-1]) if loc[:-1] else positions.of_value(())
        elif error["type"] == "extra_forbidden" or on_key:
            mark = positions.of_key(loc)
        else:
            mark = positions.of_value(loc)
        found.append(Diagnostic(path, mark.line, mark.col, format_loc((*prefix, *loc)), message, hint))
    return _drop_misspelled_missing(found)


def _drop_misspelled_missing(found: list[Diagnostic]) -> list[Diagnostic]:
    """Drop `missing required key 'files'` next to `unknown key 'file' (did you mean 'files'?)`."""
    suggested = {
        (d.loc.rpartition(".")[0], d.hint) for d in found if d.message.startswith("unknown key ") and d.hint
    }
    return [
        d
        for d in found
        if not (
            d.message.startswith("missing required key ")
            and (d.loc.rpartition(".")[0], did_you_mean(d.loc.rpartition(".")[2])) in suggested
        )
    ]
