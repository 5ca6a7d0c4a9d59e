"""Property: whatever bytes a spec file holds, load_spec returns a LoadedSpec or raises SpecError.

Never another exception, and every diagnostic is located (line, col >= 1) with a message.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dag_factory.errors import SpecError
from dag_factory.load.specs import LoadedPlatform, LoadedSpec, load_platform, load_spec
from tests.paths import REPO

PLATFORM = load_platform(REPO / "project_configs" / "platform.yaml")
EXAMPLES = sorted(
    [p for p in (REPO / "project_configs").glob("*.yaml") if p.name != "platform.yaml"]
    + list((REPO / "tests" / "cases" / "valid").glob("*.yaml"))
)
EXAMPLE_LINES = [p.read_text().splitlines() for p in EXAMPLES]

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
YAML_ALPHABET = st.sampled_from(list(":-[]{},#&*!|>'\"%@`?\t\n ") + list("abcnoyes019._/~<"))


def _check(path: Path, raw: bytes, platform: LoadedPlatform | None = PLATFORM) -> None:
    path.write_bytes(raw)
    try:
        loaded = load_spec(path, platform)
    except SpecError as exc:
        assert exc.diagnostics
        for d in exc.diagnostics:
            assert d.line >= 1 and d.col >= 1, d
            assert d.message.strip(), d
            assert d.path == str(path)
            assert "\n" not in d.render(), d
    else:
        assert isinstance(loaded, LoadedSpec)


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "spec.yaml"


@FUZZ
@given(raw=st.binary(max_size=400))
def test_random_bytes(spec_path: Path, raw: bytes) -> None:
    _check(spec_path, raw)


@FUZZ
@given(text=st.text(YAML_ALPHABET, max_size=300))
def test_random_yaml_like_text(spec_path: Path, text: str) -> None:
    _check(spec_path, text.encode())


@FUZZ
@given(text=st.text(max_size=200))
def test_random_unicode_text(spec_path: Path, text: str) -> None:
    _check(spec_path, text.encode("utf-8", "surrogatepass"))


def _mutate(lines: list[str], data: st.DataObject) -> list[str]:
    lines = list(lines)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        if not lines:
            break
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        kind = data.draw(
            st.sampled_from(["delete", "duplicate", "swap", "insert", "indent", "dedent", "replace_value"]),
            label="kind",
        )
        line = lines[i]
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, line)
        elif kind == "swap":
            j = data.draw(st.integers(0, len(lines) - 1), label="other")
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "insert":
            at = data.draw(st.integers(0, len(line)), label="at")
            lines[i] = line[:at] + data.draw(st.text(YAML_ALPHABET, min_size=1, max_size=5)) + line[at:]
        elif kind == "indent":
            lines[i] = " " * data.draw(st.integers(1, 4)) + line
        elif kind == "dedent":
            lines[i] = line.lstrip()
        elif ":" in line:
            key = line.split(":", 1)[0]
            value = data.draw(
                st.one_of(
                    st.sampled_from(
                        ["", "null", "no", "yes", "-1", "1.5", "2026-02-30", "[]", "{}", "[a, b]", "~", "'x'"]
                    ),
                    st.text(YAML_ALPHABET, max_size=8),
                ),
                label="value",
            )
            lines[i] = f"{key}: {value}"
    return lines


@FUZZ
@given(data=st.data())
def test_mutated_examples(spec_path: Path, data: st.DataObject) -> None:
    lines = data.draw(st.sampled_from(EXAMPLE_LINES), label="example")
    mutated = "\n".join(_mutate(lines, data)) + "\n"
    _check(spec_path, mutated.encode())


@settings(max_examples=100, deadline=None, database=None)
@given(data=st.data())
def test_mutated_examples_without_platform(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    lines = data.draw(st.sampled_from(EXAMPLE_LINES), label="example")
    path = tmp_path_factory.mktemp("fuzz", numbered=True) / "spec.yaml"
    _check(path, ("\n".join(_mutate(lines, data)) + "\n").encode(), platform=None)


def test_examples_are_valid_before_mutation(spec_path: Path) -> None:
    for lines in EXAMPLE_LINES:
        spec_path.write_text("\n".join(lines) + "\n")
        assert isinstance(load_spec(spec_path, PLATFORM), LoadedSpec)
