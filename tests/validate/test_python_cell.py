"""Python parameters cells read with Python's parser, where papermill's line regex goes wrong."""

from __future__ import annotations

import pytest

from dag_factory.validate.declared import Declared, Unread, kind_of_type
from dag_factory.validate.python_cell import early_exits, read_python_cell


def _names(source: str) -> dict[str, Declared]:
    reading = read_python_cell(source)
    assert reading.syntax_error is None, reading.syntax_error
    return {p.name: p for p in reading.parameters}


def test_a_comment_with_two_equals_signs_keeps_the_parameter() -> None:
    """papermill skips any line holding two '=': `>=` in a comment lost the declaration."""
    found = _names("threshold = 0.5  # keep rows whose score >= threshold\n")
    assert found["threshold"] == Declared(
        "threshold", "0.5", "float", "", 1, "keep rows whose score >= threshold", "0.5"
    )


def test_an_equals_sign_inside_a_string_keeps_the_parameter() -> None:
    found = _names("query = \"select * from t where day = '2026-01-01'\"\n")
    assert found["query"].kind == "string"
    assert found["query"].value == "\"select * from t where day = '2026-01-01'\""


def test_keyword_arguments_of_a_multi_line_call_are_not_parameters() -> None:
    """papermill splits the call at '=' and takes `backoff` for a parameter; only `opts` is one."""
    found = _names("opts = dict(retries=1,\n    backoff=2)\nafter = 1\n")
    assert list(found) == ["opts", "after"]
    assert found["opts"].kind == "dict"
    assert found["opts"].default == "dict(retries=1,\n    backoff=2)"
    assert found["opts"].shown() == "opts = dict(retries=1, backoff=2)"
    assert found["after"].line == 3


def test_annotations_type_comments_and_required_parameters() -> None:
    found = _names(
        "x: int  # rows\n"
        "ratio: float = 1\n"
        "names: list[str] = []\n"
        "limit: Optional[int] = None\n"
        "other: int | None = None\n"
        "e = os.environ.get('E')  # type: str\n"
        "f = os.environ.get('F')\n"
    )
    assert found["x"] == Declared("x", None, "int", "int", 1, "rows", None)
    assert found["x"].required and found["x"].shown() == "x: int"
    assert found["ratio"].kind == "float"  # the annotation wins over the literal's int
    assert found["names"].kind == "list"
    assert found["limit"].kind == "int" and found["limit"].value == "null"
    assert found["other"].kind == "int"
    assert (found["e"].kind, found["e"].type_name, found["e"].help) == ("string", "str", "")
    assert (found["f"].kind, found["f"].value, found["f"].required) == (None, None, False)


def test_several_names_in_one_statement() -> None:
    found = _names("a = b = 3\nc, d = 1, 'x'\ne, f = pair()\n")
    assert [(n, p.default, p.kind) for n, p in found.items()] == [
        ("a", "3", "int"),
        ("b", "3", "int"),
        ("c", "1", "int"),
        ("d", "'x'", "string"),
        ("e", "pair()", None),
        ("f", "pair()", None),
    ]


def test_ipython_syntax_compiles_like_in_the_kernel() -> None:
    found = _names("%matplotlib inline\n!echo hi\nn = 3\n")
    assert list(found) == ["n"]


def test_assignments_inside_blocks_are_reported_unread() -> None:
    source = "import os\nif os.environ.get('X'):\n    n = 1\nfor i in range(3):\n    print(i)\n"
    reading = read_python_cell(source)
    assert reading.parameters == []
    assert reading.unread == [Unread(2, "if os.environ.get('X'):", "an assignment inside `if`")]


def test_a_cell_that_does_not_compile() -> None:
    reading = read_python_cell("a = 1\nb = (1,\n  2\nc = 3\n")
    assert reading.syntax_error == Unread(2, "b = (1,", "'(' was never closed")


@pytest.mark.parametrize(
    ("written", "kind"),
    [
        ("int", "int"),
        ("float", "float"),
        ("str", "string"),
        ("list[str]", "list"),
        ("typing.List[int]", "list"),
        ("Optional[int]", "int"),
        ("dict[str, int] | None", "dict"),
        ("int | str", None),
        ("Int64", "int"),
        ("Vector{String}", "list"),
        ("Seq[String]", "list"),
        ("[double]", "float"),
        ("pd.DataFrame", None),
    ],
)
def test_kind_of_a_written_type(written: str, kind: str | None) -> None:
    assert kind_of_type(written) == kind


def test_early_exits_that_papermill_takes_for_success() -> None:
    source = (
        "import sys\n"
        "if done:\n"
        "    sys.exit(0)\n"
        "def stop():\n"
        "    sys.exit()\n"  # only when called: not at the top level
        "raise SystemExit\n"
        "sys.exit(1)\n"  # a failure papermill reports
        "sys.exit(code)\n"  # may be 0
        "exit()\n"  # IPython's exit() does not stop a run
    )
    assert early_exits(source) == [(3, "sys.exit(0)"), (6, "raise SystemExit"), (8, "sys.exit(code)")]
    assert early_exits("this is not python(") == []
