"""Golden files: expected outputs committed next to the tests. `make golden` (REGENERATE_GOLDEN=1)
rewrites them from the current output; review the diff before committing."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REGENERATE = os.environ.get("REGENERATE_GOLDEN", "") not in ("", "0")


def check_golden(output: str, expected_file: Path) -> None:
    """The output equals the golden file (or, when regenerating, becomes it)."""
    shown = expected_file.relative_to(REPO) if expected_file.is_relative_to(REPO) else expected_file
    if REGENERATE:
        expected_file.parent.mkdir(parents=True, exist_ok=True)
        expected_file.write_text(output)
        return
    assert expected_file.exists(), f"{shown} is missing: run `make golden` and review it"
    assert output == expected_file.read_text(), f"output differs from {shown} (`make golden` if intended)"
