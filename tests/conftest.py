"""Shared test set-up. Real local servers live in tests/servers/, one plugin module each."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Airflow reads its config at import: point it at a throwaway home before any test imports it.
_HOME = tempfile.mkdtemp(prefix="dag-factory-test-airflow-")
os.environ.setdefault("AIRFLOW_HOME", _HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")

# One cache for the whole run, shared by xdist's workers (its entries are built under locks): the demo's
# shared environment is built once and every local Airflow home is a copy of one migrated metadata DB.
# A test that needs its own cache sets DAG_FACTORY_CACHE_DIR itself.
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
_CACHE = (
    Path(tempfile.gettempdir()) / f"dag-factory-test-cache-{_RUN}"
    if _RUN
    else Path(tempfile.mkdtemp(prefix="dag-factory-test-cache-"))
)
_CACHE.mkdir(mode=0o700, exist_ok=True)
os.environ.setdefault("DAG_FACTORY_CACHE_DIR", str(_CACHE))
# the venv's own tools (uv, airflow, papermill) first on PATH, as `make test` runs them
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

pytest_plugins = [
    "tests.servers.airflow",
    "tests.servers.postgres",
    "tests.servers.moto",
    "tests.servers.sshd",
    "tests.servers.sagemaker",
]

IN_CI = os.environ.get("CI", "").lower() == "true"


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
def uv_on_path() -> None:
    """uv is a test dependency (pyproject's `test` extra): without it shared environments are off."""
    assert shutil.which("uv"), "uv is not on PATH: install the test extra (`make install`)"


# Slowest first, so that xdist (which hands out one test, or one group, at a time: below) never ends on
# a worker that still has a long queue.
_FIRST = ("tests/distributed/", "tests/e2e/", "tests/local/", "tests/harness/", "tests/security/")
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
