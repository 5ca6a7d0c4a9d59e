"""Small reusable field types shared by the job and platform models."""

from __future__ import annotations

import copy
import keyword
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainValidator,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from dag_factory.spec import text
from dag_factory.spec.rules import Violation, raise_violations, rule_error
from dag_factory.spec.text import FREE, NAME, StringRule


@dataclass(frozen=True)
class SchemaExtra:
    """Annotated metadata: JSON Schema keywords pydantic cannot derive from a validator (a pattern
    with lookahead, uniqueItems, reserved names), so editors and CI validators know the rule too."""

    keywords: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, **keywords: Any) -> SchemaExtra:
        return cls(tuple(keywords.items()))

    def __get_pydantic_json_schema__(
        self, core: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core)
        schema.update(copy.deepcopy(dict(self.keywords)))
        return schema


_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_NOT_STRINGS = (BaseModel, bool, int, float, type(None))


class StrictModel(BaseModel):
    """Unknown keys are errors; values are not silently coerced between types; every string follows
    the string rule (`spec.text`): NAME unless the field's annotation, or the class, says otherwise."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    string_rule: ClassVar[StringRule] = NAME
    _string_rules: ClassVar[dict[str, StringRule]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._string_rules = {
            name: next((m for m in field.metadata if isinstance(m, StringRule)), cls.string_rule)
            for name, field in cls.model_fields.items()
        }

    @classmethod
    def rule_of(cls, name: str) -> StringRule:
        return cls._string_rules[name]

    @field_validator("*")
    @classmethod
    def _follow_the_string_rule(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, _NOT_STRINGS) or not text.may_break_a_rule(value):
            return value
        raise_violations(cls.__name__, text.violations(value, cls._string_rules[info.field_name or ""]))
        return value

    @classmethod
    def __get_pydantic_json_schema__(cls, core: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core)
        target = handler.resolve_ref_schema(schema)
        rules = {name: cls.rule_of(name) for name in cls.model_fields}
        text.constrain_schema(target.get("properties", {}), rules)
        return schema


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


Identifier = Annotated[
    str,
    Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"),
    AfterValidator(_check_identifier),
    SchemaExtra.of(**{"not": {"enum": sorted(keyword.kwlist)}}),
]

# SageMaker tag values: letters, digits, spaces (any script) and _ . : / = + - @, at most 256.
MAX_TAG_VALUE = 256
_TAG_PUNCTUATION = frozenset("_.:/=+-@")
TAG_VALUE_HINT = "it becomes a SageMaker tag value: use letters, digits, spaces and _ . : / = + - @"
_TAG_SCHEMA_PATTERN = "^[^!\"#$%&'()*,;<>?\\[\\\\\\]^`{|}~\\u0000-\\u001f\\u007f]*$"


def _check_tag_value(value: str) -> str:
    bad = next(
        (c for c in value if c not in _TAG_PUNCTUATION and unicodedata.category(c)[0] not in "LNZ"), None
    )
    if bad is not None:
        raise rule_error(
            f"{text.shown(value)} holds {bad!r}, which AWS does not allow in a tag", TAG_VALUE_HINT
        )
    return value


TagValue = Annotated[
    str,
    Field(min_length=1, max_length=MAX_TAG_VALUE, json_schema_extra={"pattern": _TAG_SCHEMA_PATTERN}),
    AfterValidator(_check_tag_value),
]


# Parameter values travel as written (base64, never rendered by Airflow), and a secret passed as a
# parameter would be saved in the archived notebook for anyone who can read the output bucket.
SECRETS_HINT = (
    "parameters are passed as written, never rendered, and executed notebooks are archived: "
    "read secrets (var, conn) inside the notebook, e.g. from AWS Secrets Manager"
)


def _param_problems(value: Any, loc: tuple[str | int, ...] = ()) -> Iterator[Violation]:
    """What YAML and papermill both carry faithfully, without templates; each problem at its place."""
    if isinstance(value, str):
        template = text.TEMPLATE.search(value)
        if template:
            yield Violation(loc, f"template {text.shown(value)} in a parameter value", SECRETS_HINT, value)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _param_problems(item, (*loc, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _param_problems(item, (*loc, key))
    elif not (value is None or isinstance(value, bool | int | float)):
        message = "expected a string, number, boolean, null, list or mapping"
        yield Violation(loc, message, "quote it to pass it as a string", value, quote=True)


def _check_param_value(value: Any) -> Any:
    raise_violations("parameter", _param_problems(value))
    return value


# A parameter value in the JSON Schema is recursive, so it lives in $defs; pydantic cannot emit a $ref
# to a definition it did not make, so the field says DEF_MARKER and spec.schema links it.
DEF_MARKER = "x-dag-factory-def"
PARAMETER_VALUE_DEF = "ParameterValue"
PARAMETER_VALUE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "not": {"pattern": text.SCHEMA_NO_TEMPLATE}},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": {"$ref": f"#/$defs/{PARAMETER_VALUE_DEF}"}},
        {"type": "object", "additionalProperties": {"$ref": f"#/$defs/{PARAMETER_VALUE_DEF}"}},
    ]
}
_PARAM_SCHEMA = {DEF_MARKER: PARAMETER_VALUE_DEF}


# What a notebook parameter may hold: what YAML and papermill both carry faithfully.
ParamValue = Annotated[Any, PlainValidator(_check_param_value), WithJsonSchema(_PARAM_SCHEMA)]
Parameters = Annotated[dict[Identifier, ParamValue], FREE]
