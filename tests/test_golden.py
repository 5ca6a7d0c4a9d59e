"""Golden files (tests/golden.py): compared by default, rewritten by `make golden`, never under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.golden import check_golden


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    expected = tmp_path / "expected.txt"
    expected.write_text("old output\n")
    return expected


@pytest.mark.parametrize("ci", ["true", "1"])
def test_regenerating_golden_files_is_refused_under_ci(
    golden: Path, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("REGENERATE_GOLDEN", "1")
    with pytest.raises(pytest.fail.Exception) as info:
        check_golden("new output\n", golden)
    assert str(info.value) == (
        f"REGENERATE_GOLDEN=1 under CI={ci}: golden files are never regenerated in CI, only compared "
        "(unset REGENERATE_GOLDEN; run `make golden` locally and review the diff)"
    )
    assert golden.read_text() == "old output\n"  # left as it was
    missing = golden.with_name("missing.txt")
    with pytest.raises(pytest.fail.Exception):
        check_golden("new output\n", missing)
    assert not missing.exists()


def test_regenerating_golden_files_outside_ci_rewrites_them(
    golden: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("REGENERATE_GOLDEN", "1")
    check_golden("new output\n", golden)
    assert golden.read_text() == "new output\n"


@pytest.mark.parametrize("regenerate", [None, "0"])
def test_golden_files_are_only_compared_by_default(
    golden: Path, monkeypatch: pytest.MonkeyPatch, regenerate: str | None
) -> None:
    monkeypatch.setenv("CI", "true")
    if regenerate is None:
        monkeypatch.delenv("REGENERATE_GOLDEN", raising=False)
    else:
        monkeypatch.setenv("REGENERATE_GOLDEN", regenerate)
    check_golden("old output\n", golden)
    with pytest.raises(AssertionError) as info:
        check_golden("new output\n", golden)
    assert str(info.value).startswith(f"output differs from {golden} (`make golden` if intended)")
    assert golden.read_text() == "old output\n"
