"""A local run's processes reuse the DAG built for a plan; anywhere else every parse builds its own."""

from __future__ import annotations

import pytest

from dag_factory.airflow import dag_reuse
from dag_factory.airflow.build import dag_from_spec
from tests.paths import REPO

DEMO = REPO / "project_configs" / "churn-demo.yaml"


def test_without_reuse_every_parse_builds_its_dag() -> None:
    assert dag_from_spec(DEMO, env="local") is not dag_from_spec(DEMO, env="local")


def test_with_reuse_a_parse_of_the_same_plan_returns_the_dag_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dag_reuse, "_built", [])
    monkeypatch.setattr(dag_reuse, "_on", False)
    dag_reuse.reuse_built_dags()
    dag = dag_from_spec(DEMO, env="local")
    assert dag_from_spec(DEMO, env="local") is dag
    subset = dag_from_spec(DEMO, env="local", only=["de"])  # another plan: another DAG
    assert subset is not dag and set(subset.task_ids) < set(dag.task_ids)
