"""YAML 1.1 (dag-factory) vs YAML 1.2 (editors): scalars the two read differently are flagged where
they are taken as read, with the spelling both read alike."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dag_factory.errors import SpecError
from dag_factory.load.specs import load_spec
from dag_factory.load.yaml_source import parse_yaml, yaml12_value
from tests.specs import MINIMAL_SPEC


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("no", "no"),
        ("on", "on"),
        ("yes", "yes"),
        ("true", True),
        ("False", False),
        ("~", None),
        ("", None),
        ("0755", 755),
        ("0o17", 15),
        ("0x1F", 31),
        ("1e3", 1000.0),
        ("1:30", "1:30"),
        ("1_000", "1_000"),
        ("2026-01-05", "2026-01-05"),
        (".inf", math.inf),
        ("de", "de"),
    ],
)
def test_what_yaml_1_2_reads(text: str, value: object) -> None:
    assert yaml12_value(text) == value and type(yaml12_value(text)) is type(value)


def test_positions_keep_the_scalars_the_versions_read_differently() -> None:
    doc = parse_yaml(
        "s.yaml", b"a: [de, no]\nb: 0755\nc: 1e3\nd: !!str 0755\ne: '0755'\nf: 1:30\ng: 12\nh: 2026-01-05\n"
    )
    assert doc.positions.yaml12 == {
        ("a", 1): ("no", "no"),
        ("b",): ("0755", 755),
        ("c",): ("1e3", 1000.0),
        ("f",): ("1:30", "1:30"),
    }
    assert doc.positions.written == {
        ("a", 1): "no",
        ("b",): "0755",
        ("f",): "1:30",
        ("g",): "12",
        ("h",): "2026-01-05",
    }


def _problems(tmp_path: Path, extra: str) -> list[str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(MINIMAL_SPEC + extra)
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    return [d.render().removeprefix(f"{spec}:") for d in info.value.diagnostics]


def test_a_string_field_given_a_yaml_1_2_number(tmp_path: Path) -> None:
    assert _problems(tmp_path, "runtime:\n  kernel: 1e3\n") == [
        "10:11: runtime.kernel: 1e3 means a string to dag-factory (yaml 1.1), the number 1000.0 to editors "
        '(yaml 1.2) (quote it: "1e3")'
    ]


def test_parameters_get_both_spellings(tmp_path: Path) -> None:
    assert _problems(tmp_path, "parameters:\n  flag: off\n  n: 1e3\n") == [
        "10:9: parameters.flag: off means the boolean false to dag-factory (yaml 1.1), a string to editors "
        '(yaml 1.2) (write false, or quote it for the text: "off")',
        "11:6: parameters.n: 1e3 means a string to dag-factory (yaml 1.1), the number 1000.0 to editors "
        '(yaml 1.2) (quote it: "1e3", or write 1000.0 for the number)',
    ]


def test_a_wrong_type_is_reported_once_by_validation(tmp_path: Path) -> None:
    """`kernel: on` is a boolean to dag-factory: validation says so, quoting it; no second message."""
    assert _problems(tmp_path, "runtime:\n  kernel: on\n") == [
        "10:11: runtime.kernel: expected a string, got on, which yaml reads as the boolean true "
        '(quote it: "on")'
    ]


def test_overrides_are_checked_against_the_field_they_override(tmp_path: Path) -> None:
    assert _problems(tmp_path, "environments:\n  prod:\n    catchup: yes\n    runtime: {kernel: 0o17}\n") == [
        "11:14: environments.prod.catchup: yes means the boolean true to dag-factory (yaml 1.1), a string to "
        "editors (yaml 1.2) (write true)",
        "12:23: environments.prod.runtime.kernel: 0o17 means a string to dag-factory (yaml 1.1), "
        'the number 15 to editors (yaml 1.2) (quote it: "0o17")',
    ]


def test_quoted_and_unambiguous_scalars_pass(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(MINIMAL_SPEC + "catchup: true\nparameters: {a: 'no', b: 1000.0, c: 12, d: '1:30'}\n")
    loaded = load_spec(spec)
    assert loaded.doc.positions.yaml12 == {}  # no scalar the two versions read differently
    assert loaded.spec.catchup is True
    parameters = loaded.spec.parameters
    assert parameters == {"a": "no", "b": 1000.0, "c": 12, "d": "1:30"}
    assert [type(parameters[k]) for k in "abcd"] == [str, float, int, str]
