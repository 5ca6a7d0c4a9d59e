"""Property: no depth or width of nesting crashes the loader, up to 100k levels; too deep or too
wide is one located error, found before libyaml composes anything (its composer recurses in C and
overflows the stack on tens of thousands of levels: the process died with SIGSEGV, printing nothing)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dag_factory.errors import SpecError
from dag_factory.load.yaml_source import MAX_BYTES, MAX_DEPTH, MAX_NODES, parse_yaml
from tests.paths import REPO

TOO_DEEP = f"nesting is deeper than {MAX_DEPTH} levels"
TOO_WIDE = f"document has more than {MAX_NODES} values"


@dataclass
class Nested:
    """A YAML text and where each collection opens (1-based columns on line 1), in order."""

    parts: list[str] = field(default_factory=list)
    size: int = 0
    opened: list[int] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)

    def open(self, token: str) -> None:
        self.opened.append(self.size + 1)
        self.add(token)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _nested(style: str, depth: int, width: int, closed: bool) -> Nested:
    out = Nested()
    if style == "block":  # `- - - x`: each `- ` opens a block sequence
        for _ in range(depth):
            out.open("- ")
        out.add("x")
        return out
    out.opened.append(1)  # the document's mapping: `a: ...`
    out.add("a: ")
    closers = []
    for level in range(depth):
        kind = style if style != "mixed" else ("seq", "map")[level % 2]
        if kind == "seq":
            out.open("[")
            out.add("x, " * width)
            closers.append("]")
        else:
            out.open("{")
            out.add("".join(f"s{i}: x, " for i in range(width)) + "k: ")
            closers.append("}")
    out.add("1")
    if closed:
        out.add("".join(reversed(closers)))
    return out


depths = st.one_of(
    st.integers(1, MAX_DEPTH + 5),
    st.integers(MAX_DEPTH - 2, MAX_DEPTH + 2),
    st.integers(MAX_DEPTH + 1, 100_000),
    st.just(100_000),
)


@settings(max_examples=120, deadline=None, database=None)
@given(
    style=st.sampled_from(["seq", "map", "mixed", "block"]),
    depth=depths,
    width=st.integers(0, 3),
    closed=st.booleans(),
)
@example(style="seq", depth=100_000, width=0, closed=True)
@example(style="map", depth=100_000, width=3, closed=False)  # over 2 MB: refused before parsing
@example(style="block", depth=100_000, width=0, closed=False)
@example(style="mixed", depth=MAX_DEPTH - 1, width=1, closed=True)  # the deepest a spec may be
def test_any_depth_is_an_answer_never_a_crash(style: str, depth: int, width: int, closed: bool) -> None:
    nested = _nested(style, depth, width, closed)
    raw = (nested.text + "\n").encode()
    try:
        doc = parse_yaml("deep.yaml", raw)
    except SpecError as exc:
        found = exc.diagnostics
    else:
        found = []
        assert len(nested.opened) <= MAX_DEPTH, "a document deeper than the limit was loaded"
        assert doc.data is not None
    for d in found:
        assert d.line >= 1 and d.col >= 1 and d.message
    if len(raw) > MAX_BYTES:  # refused before it is even parsed
        assert [d.message for d in found] == [f"file is larger than {MAX_BYTES} bytes"]
    elif len(nested.opened) > MAX_DEPTH:
        [d] = found
        assert (d.line, d.col, d.message) == (1, nested.opened[MAX_DEPTH], TOO_DEEP)
    else:
        assert all(d.message != TOO_DEEP for d in found)


@settings(max_examples=25, deadline=None, database=None)
@given(items=st.integers(1, 100_000), flow=st.booleans())
def test_any_width_is_an_answer_never_a_crash(items: int, flow: bool) -> None:
    text = "a: [" + "x, " * items + "]\n" if flow else "a:\n" + "  - x\n" * items
    try:
        doc = parse_yaml("wide.yaml", text.encode())
    except SpecError as exc:
        [d] = exc.diagnostics
        assert items + 2 > MAX_NODES  # the mapping, its key, the list and the items
        assert d.message == TOO_WIDE and d.line >= 1
    else:
        assert len(doc.data["a"]) == items


@pytest.mark.parametrize("style", ["seq", "map", "block"])
def test_validate_answers_a_100k_level_file_with_an_error_not_a_signal(tmp_path: Path, style: str) -> None:
    spec = tmp_path / "deep.yaml"
    nested = _nested(style, 100_000, 0, closed=False)
    spec.write_text(nested.text + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "dag_factory.cli.app", "validate", str(spec), "--no-notebooks",
         "--platform", str(REPO / "project_configs" / "platform.yaml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    where = f"{spec}:1:{nested.opened[MAX_DEPTH]}"
    assert done.stdout.splitlines()[0] == f"{where}: {TOO_DEEP} (flatten the data)"
