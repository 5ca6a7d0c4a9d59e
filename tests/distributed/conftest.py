"""The distributed harness: one Airflow cluster (tests/servers/airflow_cluster.py) for this package.

Scheduler, DAG processor, triggerer, api-server, two Celery workers with a Redis broker and a PostgreSQL
metadata DB run for the tests of this folder only (``scope="package"``: they stop before the rest of the
suite). SageMaker/EC2/S3 are moto with the e2e ENI patch, the notebook instances a real sshd, delivery a
real PostgreSQL database, as in tests/e2e. Each test gets a ``Deployment`` (tests/distributed/deployment.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.distributed.deployment import CLUSTER_ENV, Deployment, configure
from tests.servers.airflow_cluster import AirflowCluster, running_cluster
from tests.servers.moto import MotoServer
from tests.servers.postgres import PostgresServer
from tests.servers.sagemaker import SageMakerEnv
from tests.servers.sshd import SshdServer

WAREHOUSE_DB = "warehouse_distributed"


@pytest.fixture(scope="package")
def warehouse(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    postgres_server.drop_database(WAREHOUSE_DB)
    yield postgres_server.create_database(WAREHOUSE_DB)
    postgres_server.drop_database(WAREHOUSE_DB)


@pytest.fixture(scope="package")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    moto_server: MotoServer,
    sshd_server: SshdServer,
    warehouse: PostgresServer,
) -> Iterator[AirflowCluster]:
    root = tmp_path_factory.mktemp("cluster")
    with running_cluster(root, postgres_server, factory_env=CLUSTER_ENV) as running:
        configure(running, moto_server, sshd_server, warehouse)
        yield running


@pytest.fixture
def deployment(
    cluster: AirflowCluster, sagemaker_env: SageMakerEnv, warehouse: PostgresServer, tmp_path: Path
) -> Iterator[Deployment]:
    cluster.ensure_workers()  # an earlier test may have killed one
    yield Deployment(cluster, sagemaker_env, warehouse, tmp_path)
    for worker in cluster.workers():  # a test that took a worker off the queue gives it back
        if cluster.components[worker].alive():
            cluster.consume(worker, True)
