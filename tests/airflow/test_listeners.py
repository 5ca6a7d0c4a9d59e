"""The scheduler listener's choice: what a clear by name would have cleared with a run's cleared tasks.

On the serialized DAG, as the scheduler holds it. The listener itself runs in a real scheduler in
tests/e2e/test_airflow_actions.py (the repair of a run)."""

from __future__ import annotations

from typing import Any

import pytest

from dag_factory.airflow.build import dag_from_spec
from dag_factory.airflow.listeners import companions_to_clear
from tests.paths import REPO

CONFIGS = REPO / "project_configs"
VALUE_TASKS = ("create_instance", "resolve_ip", "prepare", "nb_01_features", "nb_02_train", "stop_instance",
               "delete_instance", "deliver_churn_scores")  # fmt: skip


@pytest.fixture(scope="module")
def serialized() -> Any:
    from airflow.serialization.serialized_objects import DagSerialization

    dag = dag_from_spec(CONFIGS / "churn-model.yaml", env="prod")
    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def _finished_run(dag: Any) -> tuple[dict[str, str | None], dict[str, int]]:
    return {t: "success" for t in dag.task_ids}, {t: 1 for t in dag.task_ids}


def test_only_failed_repair_brings_back_the_values_setups_teardowns_and_report(serialized: Any) -> None:
    """fr's train notebook failed, its delivery did not run; "only failed" cleared just those two."""
    states, tries = _finished_run(serialized)
    states["fr.nb_02_train"], states["fr.deliver_churn_scores"] = None, None
    tries["fr.deliver_churn_scores"] = 0  # upstream_failed, never ran: a try number of 0 is kept
    assert companions_to_clear(serialized, states, tries) == sorted(
        [f"fr.{t}" for t in ("create_instance", "resolve_ip", "prepare", "stop_instance", "delete_instance")]
        + ["report"]
    )


def test_a_clear_by_name_leaves_nothing_to_add(serialized: Any) -> None:
    """The UI's Clear on a task already took the setups, teardowns and (downstream) the report."""
    states, tries = _finished_run(serialized)
    for task in (*VALUE_TASKS, "report"):
        states[f"fr.{task}" if task != "report" else task] = None
    assert companions_to_clear(serialized, states, tries) == []


def test_a_new_run_clears_nothing(serialized: Any) -> None:
    states = dict.fromkeys(serialized.task_ids)
    assert companions_to_clear(serialized, states, dict.fromkeys(serialized.task_ids, 0)) == []


def test_a_cleared_delivery_alone_reruns_alone(serialized: Any) -> None:
    """A delivery reads the value's outputs from the bucket: no instance is needed to run it again."""
    states, tries = _finished_run(serialized)
    states["de.deliver_churn_scores"] = None
    assert companions_to_clear(serialized, states, tries) == ["report"]
