"""The string rule: no template syntax anywhere; no shell characters in names and paths; one rule for
every field of every model (spec and platform), located at the string that breaks it."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from pydantic import ValidationError

from dag_factory.spec import text
from dag_factory.spec.job import JobSpec
from dag_factory.spec.platform import PlatformSettings
from dag_factory.spec.rules import RULE_ERROR
from dag_factory.spec.schema import json_schema
from dag_factory.spec.text import FREE, NAME, PROSE, violations

SPEC: dict[str, Any] = {
    "version": 1,
    "project": "demo",
    "owner": "ds-team",
    "start_date": dt.date(2026, 1, 5),
    "compute": {"instance_type": "ml.t3.medium"},
    "notebooks": [{"path": "nb/run.ipynb"}],
}


def _errors(model: Any, data: dict[str, Any]) -> dict[tuple[Any, ...], str]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return {e["loc"]: e["ctx"]["message"] for e in info.value.errors() if e["type"] == RULE_ERROR}


@pytest.mark.parametrize("opener", ["{{", "{%", "{#"])
@pytest.mark.parametrize("rule", [NAME, PROSE])
def test_template_syntax_is_refused_by_every_rule_but_free(opener: str, rule: text.StringRule) -> None:
    [found] = violations(f"a {opener} b", rule)
    assert found.message == f"'a {opener} b' holds template syntax '{opener}'"
    assert found.hint == text.TEMPLATE_HINT
    assert not list(violations(f"a {opener} b", FREE))


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("it's", "a single quote"),
        ('say "x"', "a double quote"),
        ("`id`", "a backtick"),
        ("$(id)", "'$'"),
        ("a\\b", "a backslash"),
        ("a\nb", "a line break"),
        ("a\tb", "a tab"),
        ("a\x07b", "the character U+0007 (unnamed)"),
        ("a\u202eb", "the character U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("a\u200bb", "the character U+200B (ZERO WIDTH SPACE)"),
        ("a\u2028b", "the character U+2028 (LINE SEPARATOR)"),
        ("a\x85b", "the character U+0085 (unnamed)"),
    ],
)
def test_names_may_not_hold_shell_or_control_characters(value: str, what: str) -> None:
    [found] = violations(value, NAME)
    assert found.message == f"{value!r} holds {what}, which no name or path needs"
    assert not list(violations(value, PROSE))


@pytest.mark.parametrize(
    "value",
    ["python3", "nb/01 features.ipynb", "a;b|c&d", "predictions/*.parquet", "ünïcødé ✓ 中文", "x}}y", "{x}"],
)
def test_names_keep_what_paths_and_globs_need(value: str) -> None:
    assert not list(violations(value, NAME))


def test_violations_are_located_inside_lists_and_mappings() -> None:
    found = list(violations({"a": ["ok", "{{ x }}"], "b{{": "ok"}, NAME, ("field",)))
    assert [(v.loc, v.key) for v in found] == [(("field", "a", 1), False), (("field", "b{{"), True)]


def test_every_model_applies_the_rule_at_the_string() -> None:
    spec = {
        **SPEC,
        "description": "it's $5 {{ x }}",
        "tags": ["ok", "te'am"],
        "runtime": {"kernel": "{% x %}"},
        "notebooks": [{"path": "nb/run.ipynb", "kernel": "py`x`"}],
    }
    errors = _errors(JobSpec, spec)
    assert errors == {
        ("description",): "\"it's $5 {{ x }}\" holds template syntax '{{'",
        ("tags", 1): '"te\'am" holds a single quote, which no name or path needs',
        ("runtime", "kernel"): "'{% x %}' holds template syntax '{%'",
        ("notebooks", 0, "kernel"): "'py`x`' holds a backtick, which no name or path needs",
    }


def test_description_is_prose() -> None:
    prose = 'it\'s "great": $5, `done`\nsecond line'
    assert JobSpec.model_validate({**SPEC, "description": prose}).description == prose


def test_parameter_values_keep_their_own_rule() -> None:
    """Any character (they travel as base64), but no template: with its own message about secrets."""
    spec = JobSpec.model_validate({**SPEC, "parameters": {"q": "it's $(x) `y` \\ \n"}})
    assert spec.parameters == {"q": "it's $(x) `y` \\ \n"}
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate({**SPEC, "parameters": {"q": [{"dsn": "{{ conn.x.password }}"}]}})
    [error] = info.value.errors()
    assert error["loc"] == ("parameters", "q", 0, "dsn")
    assert "read secrets" in error["ctx"]["hint"]


def test_environment_overrides_wait_for_the_merge() -> None:
    """An override is checked as the spec of its environment (load.specs), not twice."""
    spec = JobSpec.model_validate({**SPEC, "environments": {"prod": {"description": "{{ x }}"}}})
    assert spec.environments["prod"].description == "{{ x }}"  # kept as written, for the merge to check
    assert spec.environments["prod"].model_dump(exclude_none=True) == {"description": "{{ x }}"}
    assert spec.description == ""


def test_the_platform_file_follows_the_same_rule() -> None:
    env = {
        "backend": "local",
        "buckets": {"code": "c-b", "data": "d-b", "intermediate": "i-b", "output": "o-b"},
        "root": "$(id)",
        "connections": {"aws": "{{ var.value.x }}"},
    }
    errors = _errors(PlatformSettings, {"version": 1, "environments": {"local": env}})
    assert set(errors) == {
        ("environments", "local", "local", "root"),
        ("environments", "local", "local", "connections", "aws"),
    }


def test_the_json_schema_says_the_rule() -> None:
    schema = json_schema(JobSpec, "t")
    kernel = schema["$defs"]["Runtime"]["properties"]["kernel"]
    assert kernel["not"] == {"pattern": text.SCHEMA_NO_TEMPLATE}
    assert kernel["pattern"] == text.SCHEMA_NAME_CHARACTERS
    description = schema["properties"]["description"]
    assert description["not"] == {"pattern": text.SCHEMA_NO_TEMPLATE} and "pattern" not in description
    parameter = schema["$defs"]["ParameterValue"]["anyOf"][0]
    assert parameter == {"type": "string", "not": {"pattern": text.SCHEMA_NO_TEMPLATE}}
    for value, ok in [("python3", True), ("it's", False), ("a\u2028b", False), ("ü ✓", True)]:
        assert bool(re.search(text.SCHEMA_NAME_CHARACTERS, value)) is ok
