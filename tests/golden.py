"""Golden files: expected outputs committed next to the tests. `make golden` (REGENERATE_GOLDEN=1)
rewrites them from the current output; review the diff before committing. Never under CI: there a
golden file is only compared, and a run asked to rewrite them fails instead (a rewritten golden file
would make its own test pass whatever the output)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.paths import REPO

_NOT_CI = ("", "0", "false")


def regenerating() -> bool:
    """REGENERATE_GOLDEN is set (not "0"); read at each check, refused under CI (CI=true)."""
    if os.environ.get("REGENERATE_GOLDEN", "") in ("", "0"):
        return False
    if os.environ.get("CI", "").strip().lower() not in _NOT_CI:
        pytest.fail(
            f"REGENERATE_GOLDEN={os.environ['REGENERATE_GOLDEN']} under CI={os.environ['CI']}: golden files "
            "are never regenerated in CI, only compared (unset REGENERATE_GOLDEN; run `make golden` "
            "locally and review the diff)",
            pytrace=False,
        )
    return True


def check_golden(output: str, expected_file: Path) -> None:
    """The output equals the golden file (or, when regenerating, becomes it)."""
    shown = expected_file.relative_to(REPO) if expected_file.is_relative_to(REPO) else expected_file
    if regenerating():
        expected_file.parent.mkdir(parents=True, exist_ok=True)
        expected_file.write_text(output)
        return
    assert expected_file.exists(), f"{shown} is missing: run `make golden` and review it"
    assert output == expected_file.read_text(), f"output differs from {shown} (`make golden` if intended)"
