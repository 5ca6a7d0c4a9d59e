"""Parameters cells of R, Julia, Scala, Matlab, C#, F#, PowerShell and bash, read as simple assignments."""

from __future__ import annotations

import json

import pytest

from dag_factory.validate.assignments import SYNTAXES, read_assignments
from dag_factory.validate.declared import Unread


def _read(language: str, source: str) -> list[tuple[str, str | None, str | None, int, object]]:
    reading = read_assignments(source, SYNTAXES[language])
    return [
        (p.name, p.default, p.kind, p.line, None if p.value is None else json.loads(p.value))
        for p in reading.parameters
    ]


def test_r_both_assignment_operators_and_its_literals() -> None:
    source = (
        "library(dplyr, warn.conflicts = FALSE)\n"
        'msg <- "hi"  # greeting\n'
        "n = 10L\n"
        "ratio <- 0.5; flag = TRUE\n"
        "nothing = NULL\n"
        'cols <- c("a",\n'
        '          "b")\n'
        "opts <- list(retries = 1, backoff = 2)\n"
        "today <- Sys.Date()\n"
        "my.param <- -1e3\n"
        "if (n > 1) { big <- TRUE }\n"
    )
    assert _read("r", source) == [
        ("msg", '"hi"', "string", 2, "hi"),
        ("n", "10L", "int", 3, 10),
        ("ratio", "0.5", "number", 4, 0.5),
        ("flag", "TRUE", "bool", 4, True),
        ("nothing", "NULL", None, 5, None),
        ("cols", 'c("a",           "b")', "list", 6, ["a", "b"]),
        ("opts", "list(retries = 1, backoff = 2)", "dict", 8, {"retries": 1, "backoff": 2}),
        ("today", "Sys.Date()", None, 9, None),
        ("my.param", "-1e3", "number", 10, -1000.0),
    ]
    reading = read_assignments(source, SYNTAXES["r"])
    assert reading.unread == [Unread(11, "if (n > 1) { big <- TRUE }", "not a simple assignment")]
    assert reading.parameters[0].help == "greeting"


def test_julia() -> None:
    source = (
        "#= a block\ncomment =#\n"
        "n::Int = 10\n"
        'msg = "hi"  # help\n'
        "xs = [1, 2.5]\n"
        'd = Dict("a" => 1)\n'
        "x = nothing\n"
        "using Dates\n"
        "f(x) = x + 1\n"
    )
    assert _read("julia", source) == [
        ("n", "10", "int", 3, 10),
        ("msg", '"hi"', "string", 4, "hi"),
        ("xs", "[1, 2.5]", "list", 5, [1, 2.5]),
        ("d", 'Dict("a" => 1)', "dict", 6, {"a": 1}),
        ("x", "nothing", None, 7, None),
    ]
    assert read_assignments(source, SYNTAXES["julia"]).unread == [
        Unread(9, "f(x) = x + 1", "not a simple assignment")
    ]


@pytest.mark.parametrize(
    ("language", "source", "expected"),
    [
        (
            "scala",
            'val n = 10\nvar s: String = "x" // text\nval m = Map("a" -> 1)\nval big = 10L\nprintln(n)',
            [("n", "10", "int", 1, 10), ("s", '"x"', "string", 2, "x"),
             ("m", 'Map("a" -> 1)', "dict", 3, {"a": 1}), ("big", "10L", "int", 4, 10)],
        ),
        (
            "matlab",
            'n = 10;\ns = "x"; % text\nv = [1 2 3];\nc = {1, "a"};',
            [("n", "10", "number", 1, 10), ("s", '"x"', "string", 2, "x"),
             ("v", "[1 2 3]", "list", 3, [1, 2, 3]), ("c", '{1, "a"}', "list", 4, [1, "a"])],
        ),
        (
            "csharp",
            'var n = 10;\nstring s = "x"; // text\ndouble d = 1.5;',
            [("n", "10", "int", 1, 10), ("s", '"x"', "string", 2, "x"), ("d", "1.5", "float", 3, 1.5)],
        ),
        (
            "fsharp",
            'let n = 10\nlet mutable s = "x"\nlet l = [1; 2]',
            [("n", "10", "int", 1, 10), ("s", '"x"', "string", 2, "x"), ("l", "[1; 2]", "list", 3, [1, 2])],
        ),
        (
            "powershell",
            '$n = 10\n[string]$s = "x"\n$b = $True\n$h = @{a = 1; b = 2}\n$l = @(1, 2)',
            [("n", "10", "int", 1, 10), ("s", '"x"', "string", 2, "x"), ("b", "$True", "bool", 3, True),
             ("h", "@{a = 1; b = 2}", "dict", 4, {"a": 1, "b": 2}), ("l", "@(1, 2)", "list", 5, [1, 2])],
        ),
        (
            "bash",
            'n=10\ns="hello world"\nexport x=abc\narr=(a b c)\necho hi',
            [("n", "10", None, 1, 10), ("s", '"hello world"', None, 2, "hello world"),
             ("x", "abc", None, 3, "abc"), ("arr", "(a b c)", "list", 4, ["a", "b", "c"])],
        ),
    ],
)  # fmt: skip
def test_other_languages(language: str, source: str, expected: list[object]) -> None:
    assert _read(language, source) == expected
