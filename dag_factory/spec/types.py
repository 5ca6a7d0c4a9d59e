"""Small reusable field types shared by the job and platform models."""

from __future__ import annotations

import keyword
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
)

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class StrictModel(BaseModel):
    """Unknown keys are errors; values are not silently coerced between types."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not text or not match:
        raise ValueError(f"invalid duration {text!r}, use e.g. 90s, 30m, 4h or 1h30m")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def _check_duration(text: str) -> str:
    if parse_duration(text) <= timedelta(0):
        raise ValueError("duration must be longer than 0s")
    return text


Duration = Annotated[
    str,
    StringConstraints(pattern=r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$", min_length=2),
    AfterValidator(_check_duration),
]


def _check_identifier(name: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{name!r} is not a valid python identifier")
    return name


Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"), AfterValidator(_check_identifier)]

def _check_param_value(value: Any) -> Any:
    if not json_like(value):
        kind = type(value).__name__
        raise ValueError(
            f"parameter values must be strings, numbers, booleans, null, lists or mappings, got {kind} "
            f"{value!s}; quote it to pass a string"
        )
    template = next((text for text in _strings(value) if "{{" in text or "{%" in text), None)
    if template is not None:
        # Values travel as written (never rendered by Airflow), and a secret passed as a parameter
        # would be saved in the archived notebook for anyone who can read the output bucket.
        raise ValueError(
            f"template {template!r} in a parameter value: parameters are passed as written, never "
            "rendered, and secrets (var, conn) must not be parameters because executed notebooks are "
            "archived; read secrets inside the notebook, e.g. from AWS Secrets Manager"
        )
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    return []


_PARAM_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string"},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array"},
        {"type": "object"},
    ]
}

# What a notebook parameter may hold: what YAML and papermill both carry faithfully.
ParamValue = Annotated[Any, PlainValidator(_check_param_value), WithJsonSchema(_PARAM_SCHEMA)]
Parameters = dict[Identifier, ParamValue]


def json_like(value: Any) -> bool:
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if isinstance(value, list):
        return all(json_like(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and json_like(v) for k, v in value.items())
    return False
