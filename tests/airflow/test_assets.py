"""Deliveries as Airflow assets: each deliver task's outlet, and DAGs scheduled on assets."""

from __future__ import annotations

from pathlib import Path

import pytest

from dag_factory.airflow.build import build_dag
from dag_factory.load.specs import load_platform, load_spec
from dag_factory.plan.planner import plan_dag
from dag_factory.spec.assets import check_asset_uri

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "project_configs" / "platform.yaml"
ALL_TARGETS = ROOT / "tests" / "cases" / "valid" / "all_targets.yaml"
LOCAL_ROOT = (ROOT / ".dag-factory").as_posix()

EXPECTED = {
    "prod": {
        "deliver_0_snowflake": "snowflake://xy12345.eu-west-1/ANALYTICS/ML/SCORES",
        "deliver_1_postgres": "postgres://postgres.prod.internal:5432/analytics/public/scores",
        "deliver_2_s3": "s3://nb-data-prod/exports/scores",
        "deliver_3_duckdb": "duckdb:/srv/warehouse/scores.duckdb/scores",
    },
    # locally, warehouse targets load into the DuckDB file and s3 copies into a folder
    "local": {
        "deliver_0_snowflake": f"duckdb:{LOCAL_ROOT}/warehouse.duckdb/ML.SCORES",
        "deliver_1_postgres": f"duckdb:{LOCAL_ROOT}/warehouse.duckdb/public.scores",
        "deliver_2_s3": f"file://{LOCAL_ROOT}/data/exports/scores",
        "deliver_3_duckdb": "duckdb:/srv/warehouse/scores.duckdb/scores",
    },
}


def _outlets(dag) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    return {
        task.task_id.split(".", 1)[1]: [asset.uri for asset in task.outlets]
        for task in dag.tasks
        if ".deliver_" in task.task_id
    }


@pytest.mark.parametrize("env", sorted(EXPECTED))
def test_each_deliver_task_has_its_target_as_outlet(env: str) -> None:
    from airflow.sdk import Asset
    from airflow.serialization.serialized_objects import DagSerialization

    dag = build_dag(plan_dag(load_spec(ALL_TARGETS, load_platform(PLATFORM)), env))
    assert _outlets(dag) == {task: [uri] for task, uri in EXPECTED[env].items()}
    for uri in EXPECTED[env].values():
        assert Asset(uri).uri == uri, "Airflow normalises the URI differently"
        assert check_asset_uri(uri) == uri  # a downstream spec may name it
    back = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert _outlets(back) == _outlets(dag)


def test_a_target_whose_connection_the_platform_does_not_locate_has_no_asset(tmp_path: Path) -> None:
    text = PLATFORM.read_text()
    start = text.index("    warehouses:  #")
    unlocated = text[:start] + text[text.index("  prod:") :]  # preprod without `warehouses`
    (tmp_path / "platform.yaml").write_text(unlocated)
    dag = build_dag(plan_dag(load_spec(ALL_TARGETS, load_platform(tmp_path / "platform.yaml")), "preprod"))
    outlets = _outlets(dag)
    assert outlets["deliver_0_snowflake"] == outlets["deliver_1_postgres"] == []
    assert outlets["deliver_2_s3"] == ["s3://nb-data-preprod/exports/scores"]


def test_a_spec_scheduled_on_assets_builds_an_asset_scheduled_dag(tmp_path: Path) -> None:
    from airflow.sdk import Asset, AssetAll
    from airflow.serialization.serialized_objects import DagSerialization

    spec = ALL_TARGETS.read_text().replace(
        'schedule: "0 4 * * MON"',
        "schedule:\n  assets: [postgres://db:5432/a/public/b, s3://bucket/exports/x]",
    )
    (tmp_path / "downstream.yaml").write_text(spec)
    (tmp_path / "notebooks").mkdir()
    plan = plan_dag(load_spec(tmp_path / "downstream.yaml", load_platform(PLATFORM)), "prod")
    assert plan.schedule is None
    assert plan.schedule_assets == ("postgres://db:5432/a/public/b", "s3://bucket/exports/x")
    assert "* schedule: when updated: postgres://db:5432/a/public/b, s3://bucket/exports/x" in plan.doc_md
    dag = build_dag(plan)
    assert dag.timetable.asset_condition == AssetAll(
        Asset("postgres://db:5432/a/public/b"), Asset("s3://bucket/exports/x")
    )
    # what the scheduler reads: still all of them (AND), the same URIs
    stored = DagSerialization.to_dict(dag)["dag"]["timetable"]["__var"]["asset_condition"]
    assert stored["__type"] == "asset_all"
    assert [a["uri"] for a in stored["objects"]] == list(plan.schedule_assets)
