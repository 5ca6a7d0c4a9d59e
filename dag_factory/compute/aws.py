"""boto3 clients with the one retry policy every SageMaker/EC2/S3 call of the factory uses."""

from __future__ import annotations

from typing import Any

from dag_factory.extras import require

# Throttling (ThrottlingException, 'Rate exceeded') is normal with dozens of parallel groups: adaptive
# mode backs off and rate-limits the client. Airflow's hooks take the same dict as `botocore_config`.
ADAPTIVE_RETRIES: dict[str, Any] = {"retries": {"mode": "adaptive", "max_attempts": 10}}


def retry_config() -> Any:
    require("aws", "botocore", "talking to AWS (deploy, gc, the SageMaker backend)")
    from botocore.config import Config

    return Config(**ADAPTIVE_RETRIES)


def client(service: str, region: str | None = None) -> Any:
    """A boto3 client with adaptive retries; boto3 honours AWS_ENDPOINT_URL and the usual credentials."""
    boto3 = require("aws", "boto3", "talking to AWS (deploy, gc, the SageMaker backend)")
    return boto3.client(service, region_name=region, config=retry_config())


def api_errors() -> tuple[type[Exception], ...]:
    """What a failed AWS call raises (an error answer, or no answer at all)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)
