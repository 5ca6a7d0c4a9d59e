"""Validating many files: a folder spread over processes gives exactly what one process gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from dag_factory.validate.check import validate_paths
from tests.paths import REPO


def test_a_folder_validated_in_two_processes_gives_what_one_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    folders = [Path("tests/cases/valid"), Path("tests/cases/invalid")]
    platform = Path("project_configs/platform.yaml")
    alone = validate_paths(folders, platform, notebooks=False, workers=1)
    spread = validate_paths(folders, platform, notebooks=False, workers=2)
    assert spread == alone
    assert {r.valid for r in alone} == {True, False}
