"""Deliver and publish tasks are named after their target's table or prefix, uniquely, as Airflow allows."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import TypeAdapter

from dag_factory.plan.delivery_names import deliver_task_id, delivery_names, publish_task_id
from dag_factory.spec.job import Delivery

TARGETS = TypeAdapter(list[Delivery])
AIRFLOW_TASK_ID = re.compile(r"^[\w.-]+$")  # airflow.sdk.definitions._internal.node.KEY_REGEX


def _names(*targets: dict[str, Any]) -> list[str]:
    return delivery_names(TARGETS.validate_python([{"files": "out/*.parquet", **t} for t in targets]))


def test_a_target_is_named_after_its_table_or_the_last_folder_of_its_prefix() -> None:
    assert _names(
        {"to": "snowflake", "table": "ML.CHURN_SCORES", "stage": "ML.STAGE"},
        {"to": "postgres", "table": "analytics.public.churn_metrics"},
        {"to": "s3", "prefix": "exports/weekly/churn-v2.1"},
        {"to": "duckdb", "table": "Daily_Scores"},
    ) == ["churn_scores", "churn_metrics", "churn_v2_1", "daily_scores"]
    assert (deliver_task_id("churn_scores"), publish_task_id("churn_scores")) == (
        "deliver_churn_scores",
        "publish_churn_scores",
    )


def test_targets_of_the_same_name_are_told_apart_by_kind_then_by_number_in_spec_order() -> None:
    assert _names(
        {"to": "snowflake", "table": "ML.SCORES", "stage": "ML.STAGE"},
        {"to": "postgres", "table": "a.scores"},
        {"to": "postgres", "table": "b.scores"},
        {"to": "s3", "prefix": "exports/scores"},
        {"to": "postgres", "table": "metrics"},
    ) == ["scores_snowflake", "scores_postgres", "scores_postgres_2", "scores_s3", "metrics"]
    # a number never takes another target's own name
    assert _names(
        {"to": "postgres", "table": "a.x"},
        {"to": "postgres", "table": "b.x"},
        {"to": "postgres", "table": "x_postgres_2"},
    ) == ["x_postgres", "x_postgres_3", "x_postgres_2"]


@pytest.mark.parametrize(
    "target",
    [
        {"to": "duckdb", "table": "A__B"},
        {"to": "duckdb", "table": "_" * 5 + "x" * 300},
        {"to": "s3", "prefix": "a/__"},
        {"to": "s3", "prefix": "a/=.-"},
    ],
)
def test_a_name_is_a_valid_task_id_without_the_shared_groups_separator(target: dict[str, Any]) -> None:
    [name] = _names(target)
    assert AIRFLOW_TASK_ID.match(deliver_task_id(name)) and "__" not in name and len(name) <= 64
    assert name and not name.startswith("_") and not name.endswith("_")
