"""YAML with positions: where keys and values sit, and the inputs we refuse (with their location)."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from dag_factory.errors import Diagnostic, SpecError
from dag_factory.load.yaml_source import MAX_NODES, Mark, format_loc, parse_yaml, read_yaml

CASES = Path(__file__).parents[1] / "cases" / "invalid"


def _errors(text: str | bytes) -> list[Diagnostic]:
    raw = text.encode() if isinstance(text, str) else text
    with pytest.raises(SpecError) as info:
        parse_yaml("spec.yaml", raw)
    return info.value.diagnostics


def _one(text: str | bytes) -> Diagnostic:
    [diagnostic] = _errors(text)
    return diagnostic


SPEC = """\
version: 1
compute:
  instance_type: ml.t3.medium
notebooks:
  - path: a.ipynb
    parameters: {depth: 3}
tags: [x, "y"]
"""


def test_positions_of_keys_and_values() -> None:
    doc = parse_yaml("spec.yaml", SPEC.encode())
    keys, values = doc.positions.keys, doc.positions.values
    assert keys[("compute", "instance_type")] == Mark(3, 3)
    assert values[("compute", "instance_type")] == Mark(3, 18)
    assert values[("notebooks", 0)] == Mark(5, 5)
    assert keys[("notebooks", 0, "path")] == Mark(5, 5)
    assert values[("notebooks", 0, "path")] == Mark(5, 11)
    assert keys[("notebooks", 0, "parameters", "depth")] == Mark(6, 18)
    assert values[("notebooks", 0, "parameters", "depth")] == Mark(6, 25)
    assert values[("tags", 1)] == Mark(7, 11)
    assert values[()] == Mark(1, 1)


def test_of_value_falls_back_to_the_nearest_enclosing_value() -> None:
    doc = parse_yaml("spec.yaml", SPEC.encode())
    assert doc.positions.of_value(("compute", "missing_key")) == Mark(3, 3)
    assert doc.positions.of_key(("compute",)) == Mark(2, 1)
    assert doc.positions.of_value(("nowhere", 3)) == Mark(1, 1)


def test_data_keeps_yaml_types() -> None:
    doc = parse_yaml("spec.yaml", b"a: 1\nb: 1.5\nc: true\nd: null\ne: '1'\nf: 2026-01-05\n")
    assert doc.data["a"] == 1 and doc.data["b"] == 1.5 and doc.data["c"] is True
    assert doc.data["d"] is None and doc.data["e"] == "1"
    assert str(doc.data["f"]) == "2026-01-05"


def test_invalid_date_stays_text_for_validation_to_report() -> None:
    assert parse_yaml("spec.yaml", b"d: 2026-13-05\n").data == {"d": "2026-13-05"}


def test_duplicate_key_hint_names_the_first_line() -> None:
    found = _one("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n")
    assert (found.line, found.col, found.loc) == (5, 3, "b.c")
    assert found.message == "duplicate key"
    assert "first defined at line 3" in found.hint


def test_merge_keys_are_rejected() -> None:
    found = _one("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")
    assert (found.line, found.col) == (3, 3)
    assert "merge keys" in found.message


def test_plain_aliases_are_expanded() -> None:
    doc = parse_yaml("spec.yaml", b"a: &x {k: [1, 2]}\nb: *x\n")
    assert doc.data["b"] == {"k": [1, 2]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: !!python/object/apply:os.system [ls]\n", "unsupported yaml tag !!python/object/apply:os.system"),
        ("a: !!python/name:os.system ''\n", "unsupported yaml tag !!python/name:os.system"),
        ("a: !secret x\n", "unsupported yaml tag !secret"),
        ("a: !!binary aGk=\n", "unsupported yaml tag !!binary"),
        ("a: !!set {x}\n", "unsupported yaml tag !!set"),
    ],
)
def test_tags_are_rejected(text: str, message: str) -> None:
    found = _one(text)
    assert (found.line, found.col) == (1, 4)
    assert found.message == message
    assert "remove the tag" in found.hint


def test_standard_scalar_tags_are_fine() -> None:
    assert parse_yaml("spec.yaml", b"a: !!str 123\n").data == {"a": "123"}


@pytest.mark.parametrize(
    ("text", "shown"), [("1: a\n", "'1'"), ("~: a\n", "'~'"), ("true: a\n", "'true'"), ("1.5: a\n", "'1.5'")]
)
def test_non_string_keys(text: str, shown: str) -> None:
    found = _one(text)
    assert found.message == f"keys must be strings, got {shown}"
    assert found.hint.startswith("quote the key")


def test_collection_keys() -> None:
    assert _one("? [a]\n: b\n").message == "keys must be strings, got a collection"


def test_empty_and_comment_only_files() -> None:
    assert _one("").message == "file is empty"
    assert _one("  \n\n").message == "file is empty"
    assert _one("# nothing\n\n# here\n").message == "file holds no data, only comments"


def test_non_utf8_is_located() -> None:
    found = _one(b"a: 1\nb: caf\xe9\n")
    assert (found.line, found.col) == (2, 7)
    assert "utf-8" in found.message and "\\xe9" in found.message


def test_control_character_is_located() -> None:
    found = _one(b"a: 1\nb: x\x00y\n")
    assert (found.line, found.col) == (2, 5)
    assert "U+0000" in found.message


def test_tabs_get_a_hint() -> None:
    found = _one("a:\n\tb: 1\n")
    assert found.line == 2
    assert found.hint == "indent with spaces, not tabs"


def test_multiple_documents() -> None:
    found = _one("a: 1\n---\nb: 2\n")
    assert (found.line, found.message) == (2, "more than one yaml document in the file")


def test_unclosed_bracket_points_at_where_it_opened() -> None:
    found = _one("tags: [a, b\nowner: x\n")
    assert (found.line, found.col) == (1, 7)
    assert found.message == "yaml syntax error: the '[' opened here is not closed"
    assert found.hint == "parsing stopped at line 2, col 6: did not find expected ',' or ']'"


def test_syntax_error_undefined_alias() -> None:
    assert "undefined alias" in _one("a: *nope\n").message


def test_recursive_alias_is_an_error_not_a_crash() -> None:
    assert "recursive alias" in _one("a: &x [1, *x]\n").message


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    found = _one("a: " + "[" * 3000 + "]" * 3000 + "\n")
    assert "nesting is deeper than" in found.message


def test_billion_laughs_fails_fast_and_small() -> None:
    raw = (CASES / "alias_bomb.yaml").read_bytes()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(SpecError) as info:
            parse_yaml("bomb.yaml", raw)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"more than {MAX_NODES} nodes" in info.value.diagnostics[0].message
    assert elapsed < 0.5, f"took {elapsed:.2f}s"
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.1f} MB"


def test_oversized_file() -> None:
    assert "larger than" in _one(b"a: " + b"x" * 2_100_000 + b"\n").message


def test_read_yaml_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        read_yaml(tmp_path / "nope.yaml")
    assert "cannot read file" in info.value.diagnostics[0].message


def test_all_problems_in_one_file_are_reported() -> None:
    found = _errors("a: 1\na: 2\nb: !x y\n1: z\n")
    assert [d.line for d in found] == [2, 3, 4]


def test_format_loc() -> None:
    assert format_loc(("notebooks", 0, "parameters", "x")) == "notebooks[0].parameters.x"
    assert format_loc(()) == ""
