"""Fixtures for delivery tests (their helpers: tests/deliver/outputs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    """An empty item output prefix (a local directory)."""
    path = tmp_path / "outputs"
    path.mkdir()
    return path
