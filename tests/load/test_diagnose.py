"""pydantic errors -> located diagnostics: did-you-mean, keys through unions, where each error points."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dag_factory.errors import Diagnostic, suggest
from dag_factory.load.diagnose import allowed_keys, data_loc, diagnose, discriminator_values
from dag_factory.load.yaml_source import parse_yaml
from dag_factory.spec.job import JobSpec
from dag_factory.spec.platform import PlatformSettings
from tests.specs import MINIMAL_SPEC

BASE = MINIMAL_SPEC


def _diagnose(text: str, model: Any = JobSpec) -> list[Diagnostic]:
    doc = parse_yaml("spec.yaml", text.encode())
    with pytest.raises(ValidationError) as info:
        model.model_validate(doc.data)
    return diagnose(info.value, model, doc.data, doc.path, doc.positions)


def test_suggest_close_match() -> None:
    assert suggest("scheduel", ["schedule", "start_date"]) == "did you mean 'schedule'?"


def test_suggest_lists_choices_when_nothing_is_close() -> None:
    assert suggest("zzz", ["b", "a"]) == "expected one of: a, b"
    assert suggest("zzz", []) == ""


def test_allowed_keys_of_nested_model() -> None:
    assert "max_parallel" in allowed_keys(JobSpec, ("compute", "max_paralel"))


def test_allowed_keys_through_a_discriminated_union() -> None:
    keys = allowed_keys(JobSpec, ("deliver", 0, "s3", "buckt"))
    assert {"bucket", "prefix", "files", "to"} <= set(keys)
    assert "table" not in keys
    platform_keys = allowed_keys(PlatformSettings, ("environments", "prod", "sagemaker", "sshh"))
    assert {"ssh", "subnet_id"} <= set(platform_keys)
    assert "root" not in platform_keys


def test_allowed_keys_through_dict_of_models() -> None:
    assert "schedule" in allowed_keys(JobSpec, ("environments", "prod", "scheduel"))


def test_discriminator_values() -> None:
    assert discriminator_values(JobSpec, ("deliver", 0), "to") == ["duckdb", "postgres", "s3", "snowflake"]
    assert discriminator_values(PlatformSettings, ("environments", "x"), "backend") == [
        "local",
        "sagemaker",
        "sagemaker-job",
    ]


def test_data_loc_drops_union_tags() -> None:
    data = {"deliver": [{"to": "s3", "prefix": "x"}]}
    assert data_loc(data, ("deliver", 0, "s3", "bucket")) == (("deliver", 0, "bucket"), False)
    assert data_loc({"parameters": {"a-b": 1}}, ("parameters", "a-b", "[key]")) == (
        ("parameters", "a-b"),
        True,
    )


def test_unknown_key_points_at_the_key_with_did_you_mean() -> None:
    [d] = _diagnose(BASE + "scheduel: '@daily'\n")
    assert (d.line, d.col, d.loc) == (9, 1, "scheduel")
    assert d.render() == "spec.yaml:9:1: scheduel: unknown key 'scheduel' (did you mean 'schedule'?)"


def test_unknown_key_inside_a_union_member() -> None:
    [d] = _diagnose(BASE + "deliver:\n  - to: s3\n    prefix: out\n    files: '*.json'\n    buckt: data\n")
    assert (d.line, d.col, d.loc) == (13, 5, "deliver[0].buckt")
    assert d.hint == "did you mean 'bucket'?"


def test_missing_key_points_at_the_parent_key() -> None:
    [d] = _diagnose(BASE.replace("  instance_type: ml.t3.medium\n", "  max_parallel: 2\n"))
    assert (d.line, d.col, d.loc) == (5, 1, "compute.instance_type")
    assert d.message == "missing required key 'instance_type'"


def test_bad_value_points_at_the_value() -> None:
    [d] = _diagnose(BASE.replace("ml.t3.medium", "t3.medium"))
    assert (d.line, d.col) == (6, 18)
    assert d.message == "invalid value 't3.medium'"
    assert "ml.t3.medium" in d.hint


def test_unknown_tag_points_at_the_tag_value() -> None:
    [d] = _diagnose(BASE + "deliver:\n  - to: snowflak\n    table: T\n    files: x\n    stage: S\n")
    assert (d.line, d.col, d.loc) == (10, 9, "deliver[0].to")
    assert d.message == "unknown delivery target 'snowflak'"
    assert d.hint == "did you mean 'snowflake'?"


def test_missing_tag_lists_the_choices() -> None:
    [d] = _diagnose(BASE + "deliver:\n  - table: T\n    files: x\n")
    assert d.message == "missing required key 'to'"
    assert d.hint == "add to: with one of: duckdb, postgres, s3, snowflake"


def test_norway_problem_hint() -> None:
    [d] = _diagnose(BASE + "fan_out:\n  name: country\n  values: [de, no]\n")
    assert d.message == "expected a string, got no, which yaml reads as the boolean false"
    assert d.hint == 'quote it: "no"'


def test_quoted_number_hint() -> None:
    [d] = _diagnose(BASE + "retries: '3'\n")
    assert (d.message, d.hint) == ("expected a number, got the string '3'", "remove the quotes")


def test_number_for_string_hint() -> None:
    [d] = _diagnose(BASE.replace("owner: ds-team", "owner: 42"))
    assert (d.message, d.hint) == ("expected a string, got the number 42", 'quote it: "42"')


def test_model_level_rule_points_at_the_entry_it_names() -> None:
    [d] = _diagnose(BASE + "parameters:\n  lookback: 3\n  run_id: x\n")
    assert (d.line, d.col, d.loc) == (11, 3, "parameters.run_id")


def test_duplicate_values_point_at_the_repeat() -> None:
    [d] = _diagnose(BASE + "fan_out:\n  name: country\n  values: [de, fr, de]\n")
    assert (d.line, d.loc) == (11, "fan_out.values[2]")


def test_misspelled_key_does_not_also_report_it_missing() -> None:
    found = _diagnose(BASE.replace("  instance_type:", "  instance_typ:"))
    assert [d.message for d in found] == ["unknown key 'instance_typ'"]


def test_every_error_is_reported() -> None:
    found = _diagnose(BASE.replace("version: 1", "version: 2").replace("demo", "Demo") + "retries: -1\n")
    assert [d.loc for d in found] == ["version", "project", "retries"]
    assert all(d.message[0].islower() for d in found)


def test_a_rule_over_several_values_points_at_each_entry_it_means() -> None:
    """Located by the path the rule names, never by words of the message: fan-out values such as
    `be` or `by` appear in the message yet are not where the error is."""
    found = _diagnose(
        BASE
        + "fan_out:\n  name: country\n  values: [be, by, in]\n  parameters:\n    by: {country: x}\n"
        + "parameters:\n  country: be\n"
    )
    assert sorted((d.line, d.col, d.loc) for d in found) == [
        (13, 10, "fan_out.parameters.by.country"),
        (15, 3, "parameters.country"),
    ]
    message = "parameter 'country' is the fan-out name: the factory passes each value as country"
    assert all(d.message == message for d in found)


def test_a_name_that_occurs_twice_points_at_the_second() -> None:
    [d] = _diagnose(BASE + "  - path: other/run.ipynb\n")
    assert (d.line, d.col, d.loc) == (9, 11, "notebooks[1].path")
    assert d.message == "notebook name 'run' is already used by notebooks[0], notebooks/run.ipynb"


def test_an_unknown_key_of_a_rule_is_the_key() -> None:
    [d] = _diagnose(BASE + "fan_out:\n  name: country\n  values: [de]\n  parameters:\n    fr: {x: 1}\n")
    assert (d.line, d.col, d.loc) == (13, 5, "fan_out.parameters.fr")
    assert (d.message, d.hint) == (
        "parameters for 'fr', which is not one of the fan-out values",
        "expected one of: de",
    )


def test_the_text_search_is_gone() -> None:
    import dag_factory.load.diagnose as diagnose_module

    assert not hasattr(diagnose_module, "mentioned_entry")
