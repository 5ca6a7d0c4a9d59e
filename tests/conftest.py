"""Shared test set-up. Real local servers live in tests/servers/, one plugin module each."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dag_factory.settings import PLATFORM as PLATFORM_ENV_VAR
from tests.paths import REPO

# Directories this process made for the run, removed when it ends (xdist's workers inherit the
# controller's through the environment, so only the controller removes them).
_OWN_DIRS: list[Path] = []


def _throwaway_dir(variable: str, prefix: str) -> None:
    if variable not in os.environ:
        os.environ[variable] = tempfile.mkdtemp(prefix=prefix)
        _OWN_DIRS.append(Path(os.environ[variable]))


# Airflow reads its config at import: point it at a throwaway home before any test imports it.
_throwaway_dir("AIRFLOW_HOME", "dag-factory-test-airflow-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")

# One cache for the whole run, shared by xdist's workers (its entries are built under locks): the demo's
# shared environment is built once and every local Airflow home is a copy of one migrated metadata DB.
# A test that needs its own cache sets DAG_FACTORY_CACHE_DIR itself.
_throwaway_dir("DAG_FACTORY_CACHE_DIR", "dag-factory-test-cache-")
# the venv's own tools (uv, airflow, papermill) first on PATH, as `make test` runs them
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

pytest_plugins = [
    "tests.servers.airflow",
    "tests.servers.postgres",
    "tests.servers.moto",
    "tests.servers.sshd",
    "tests.servers.sagemaker",
    "tests.servers.sagemaker_jobs",
]

IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_unconfigure(config: pytest.Config) -> None:
    """A run leaves nothing in /tmp: the cache alone held 860 MB (the demo's environment) per run."""
    for folder in _OWN_DIRS:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI=true nothing skips: a skip is a missing server or tool, and CI must say so."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped under CI=true (nothing may skip in CI): {reason}"


@pytest.fixture
def repo_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test runs in the repository root, as a user runs the CLI there: repo-relative paths (the
    golden files hold them) resolve, and no platform file comes from the environment."""
    monkeypatch.chdir(REPO)
    monkeypatch.delenv(PLATFORM_ENV_VAR, raising=False)
    return REPO


@pytest.fixture
def uv_on_path() -> None:
    """uv is a test dependency (pyproject's `test` extra): without it shared environments are off."""
    assert shutil.which("uv"), "uv is not on PATH: install the test extra (`make install`)"


# Slowest first, so that xdist (which hands out one test, or one group, at a time: below) never ends on
# a worker that still has a long queue.
_FIRST = (
    "tests/distributed/", "tests/test_compat.py", "tests/e2e/", "tests/local/", "tests/harness/",
    "tests/security/",
)
# One group runs on one worker: tests/distributed shares one Celery cluster (a package fixture), and a
# cluster per worker would be three on 2 cores. (xdist's own `loadgroup` renames node ids, which
# pytest 9 no longer lets it do: its groups silently split.)
_ONE_WORKER = ("tests/distributed/",)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return next((i for i, folder in enumerate(_FIRST) if path.startswith(folder)), len(_FIRST))

    items.sort(key=rank)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """xdist's scope scheduler with a scope per test, except one scope per folder of _ONE_WORKER."""
    from xdist.scheduler import LoadScopeScheduling

    class OneWorkerFolders(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return next((folder for folder in _ONE_WORKER if nodeid.startswith(folder)), nodeid)

    return OneWorkerFolders(config, log)
