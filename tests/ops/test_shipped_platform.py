"""The platform file this repository ships (project_configs/platform.yaml) supports what the docs tell
a data engineer to run against it."""

from __future__ import annotations

from dag_factory.load.specs import load_platform
from dag_factory.spec.platform import SageMakerEnvironment
from tests.paths import REPO

SHIPPED = REPO / "project_configs" / "platform.yaml"


def test_every_shipped_sagemaker_environment_can_be_swept() -> None:
    """docs/deploy.md's `dag-factory gc --env prod` needs each environment's airflow_url."""
    environments = load_platform(SHIPPED).settings.environments
    sagemaker = {name: env for name, env in environments.items() if isinstance(env, SageMakerEnvironment)}
    assert set(sagemaker) == {"preprod", "prod"}
    assert {name: env.airflow_url for name, env in sagemaker.items()} == {
        "preprod": "https://airflow.preprod.internal",
        "prod": "https://airflow.prod.internal",
    }
