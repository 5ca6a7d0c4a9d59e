"""The e2e fixture; what it builds (E2E, Job, the helpers the tests share) is in tests/e2e/harness.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from dag_factory.local.airflow_home import ApiServer
from tests.e2e.harness import E2E
from tests.servers.postgres import PostgresServer
from tests.servers.sagemaker import SageMakerEnv


@pytest.fixture
def e2e(
    tmp_path: Path, sagemaker_env: SageMakerEnv, postgres_db: PostgresServer, airflow_server: ApiServer
) -> E2E:
    return E2E(tmp_path, sagemaker_env, postgres_db, airflow_server)
