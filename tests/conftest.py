"""Shared test set-up. Real local servers live in tests/servers/, one plugin module each."""

from __future__ import annotations

import os
import tempfile

# Airflow reads its config at import: point it at a throwaway home before any test imports it.
_HOME = tempfile.mkdtemp(prefix="dag-factory-test-airflow-")
os.environ.setdefault("AIRFLOW_HOME", _HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")

pytest_plugins = [
    "tests.servers.airflow",
    "tests.servers.postgres",
    "tests.servers.moto",
    "tests.servers.sshd",
    "tests.servers.sagemaker",
]
