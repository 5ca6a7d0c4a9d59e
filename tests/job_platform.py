"""A platform file with one `sagemaker-job` environment, named `preprod` as the example spec's override:
the churn-model spec validates and plans on it unedited (the unit tests of the job backend share it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

IMAGE_URI = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/notebook-runner:2026.1"


def job_environment(**overrides: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "backend": "sagemaker-job",
        "account_id": "111122223333",
        "region": "eu-west-1",
        "role_arn": "arn:aws:iam::111122223333:role/notebook-jobs",
        "image_uri": IMAGE_URI,
        "subnet_ids": ["subnet-0a1b2c3d4e5f60001"],
        "security_group_ids": ["sg-0a1b2c3d4e5f60001"],
        "buckets": {
            "code": "automated-notebook-jobs",
            "data": "nb-data-jobs",
            "intermediate": "nb-int-jobs",
            "output": "nb-output-jobs",
        },
        "instance_prices": {"ml.t3.large": 0.1},
    }
    env.update(overrides)
    return env


def write_job_platform(folder: Path, **overrides: Any) -> Path:
    path = folder / "platform.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "environments": {"preprod": job_environment(**overrides)}}))
    return path
