"""Data-driven cases: every file under valid/, invalid/ and invalid_platform/ is one test.

invalid/<name>.yaml is checked against invalid/<name>.expected, the exact text `dag-factory validate`
prints for it (run from the repo root, with project_configs/platform.yaml). Regenerate the golden
files after an intended change of wording with `make golden` (REGENERATE_GOLDEN=1), then review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dag_factory.load.specs import LoadedSpec, load_platform, load_spec
from dag_factory.validate.check import validate_paths
from dag_factory.validate.output import render_text
from tests.golden import check_golden
from tests.paths import REPO

CASES = Path(__file__).resolve().parent
PLATFORM = Path("project_configs/platform.yaml")

VALID = sorted((CASES / "valid").glob("*.yaml"))
INVALID = sorted((CASES / "invalid").glob("*.yaml"))
INVALID_PLATFORM = sorted((CASES / "invalid_platform").glob("*/platform.yaml"))


def _rel(path: Path) -> Path:
    return path.relative_to(REPO)


# paths in the golden files are relative to the repo root
pytestmark = pytest.mark.usefixtures("repo_root")


@pytest.mark.parametrize("case", VALID, ids=[p.stem for p in VALID])
def test_valid_case(case: Path) -> None:
    platform = load_platform(PLATFORM)
    loaded = load_spec(_rel(case), platform)
    assert isinstance(loaded, LoadedSpec)
    assert set(loaded.per_env) == set(platform.settings.environments)
    assert loaded.project_dir.is_dir()
    [result] = validate_paths([_rel(case)], platform=PLATFORM, notebooks=False)
    assert result.valid, result.diagnostics


@pytest.mark.parametrize("case", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_case(case: Path) -> None:
    results = validate_paths([_rel(case)], platform=PLATFORM, notebooks=False)
    assert not results[0].valid
    check_golden(render_text(results) + "\n", case.with_suffix(".expected"))


@pytest.mark.parametrize("case", INVALID_PLATFORM, ids=[p.parent.name for p in INVALID_PLATFORM])
def test_invalid_platform_case(case: Path) -> None:
    results = validate_paths([_rel(case)], notebooks=False)
    assert results[0].kind == "platform"
    assert not results[0].valid
    check_golden(render_text(results) + "\n", case.parent.with_suffix(".expected"))


def test_every_golden_file_has_its_case() -> None:
    stale = [
        p.name
        for folder in ("invalid", "invalid_platform")
        for p in (CASES / folder).glob("*.expected")
        if not (p.with_suffix(".yaml").exists() or (p.with_suffix("") / "platform.yaml").exists())
    ]
    assert not stale, f"golden files without a case: {stale}"


def test_enough_cases() -> None:
    assert len(VALID) >= 5
    assert len(INVALID) >= 30
    assert len(INVALID_PLATFORM) >= 1
