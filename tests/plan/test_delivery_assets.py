"""Each planned target's asset URI (plain strings, no Airflow): names, defaults, case, paths."""

from __future__ import annotations

from typing import Any

import pytest

from dag_factory.plan.delivery_assets import delivery_asset
from dag_factory.spec.asset_uris import check_asset_uri
from dag_factory.spec.platform import LocalEnvironment, SageMakerEnvironment

BUCKETS = {"code": "code-b", "data": "data-b", "intermediate": "int-b", "output": "out-b"}
SAGEMAKER = SageMakerEnvironment.model_validate(
    {
        "backend": "sagemaker",
        "account_id": "111122223333",
        "region": "eu-west-1",
        "role_arn": "arn:aws:iam::111122223333:role/r",
        "subnet_id": "subnet-1",
        "security_group_ids": ["sg-1"],
        "buckets": BUCKETS,
        "warehouses": {
            "postgres": {"host": "db.internal", "port": 6432, "database": "analytics"},
            "snowflake": {"account": "xy12345.eu-west-1", "database": "ANALYTICS"},
        },
    }
)
LOCAL = LocalEnvironment.model_validate({"backend": "local", "buckets": BUCKETS})


@pytest.mark.parametrize(
    ("target", "uri"),
    [
        ({"to": "postgres", "table": "scores"}, "postgres://db.internal:6432/analytics/public/scores"),
        ({"to": "postgres", "table": "ml.Scores"}, "postgres://db.internal:6432/analytics/ml/Scores"),
        ({"to": "postgres", "table": "other.ml.scores"}, "postgres://db.internal:6432/other/ml/scores"),
        ({"to": "snowflake", "table": "scores"}, "snowflake://xy12345.eu-west-1/ANALYTICS/PUBLIC/SCORES"),
        ({"to": "snowflake", "table": "ml.churn"}, "snowflake://xy12345.eu-west-1/ANALYTICS/ML/CHURN"),
        ({"to": "snowflake", "table": "db2.ml.churn"}, "snowflake://xy12345.eu-west-1/DB2/ML/CHURN"),
        ({"to": "s3", "bucket": "data-b", "prefix": "exports/x"}, "s3://data-b/exports/x"),
        ({"to": "duckdb", "path": "/srv/w h.duckdb", "table": "t"}, "duckdb:/srv/w%20h.duckdb/t"),
    ],
)
def test_sagemaker_targets(target: dict[str, Any], uri: str) -> None:
    assert delivery_asset(target, SAGEMAKER) == uri
    assert check_asset_uri(uri) == uri


def test_local_s3_copy_is_a_folder() -> None:
    uri = delivery_asset({"to": "s3", "bucket": "/srv/root/data-b", "prefix": "exports/x"}, LOCAL)
    assert uri == "file:///srv/root/data-b/exports/x"
    assert check_asset_uri(uri) == uri


def test_no_asset_without_a_place() -> None:
    """A relative DuckDB file names no one place; an unlocated connection names none either."""
    assert delivery_asset({"to": "duckdb", "path": "w.duckdb", "table": "t"}, SAGEMAKER) is None
    assert delivery_asset({"to": "postgres", "table": "t"}, LOCAL) is None
    assert delivery_asset({"to": "snowflake", "table": "t"}, LOCAL) is None
