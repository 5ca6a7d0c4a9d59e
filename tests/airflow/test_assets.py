"""Deliveries as Airflow assets: one publish task per target and run (its outlet); asset schedules."""

from __future__ import annotations

from pathlib import Path

import pytest

from dag_factory.airflow.build import build_dag
from dag_factory.load.specs import load_platform, load_spec
from dag_factory.plan.planner import plan_dag
from dag_factory.spec.asset_uris import check_asset_uri
from tests.paths import REPO

PLATFORM = REPO / "project_configs" / "platform.yaml"
ALL_TARGETS = REPO / "tests" / "cases" / "valid" / "all_targets.yaml"
LOCAL_ROOT = (REPO / ".dag-factory").as_posix()

EXPECTED = {
    "prod": {
        "deliver_scores_snowflake": "snowflake://xy12345.eu-west-1/ANALYTICS/ML/SCORES",
        "deliver_scores_postgres": "postgres://postgres.prod.internal:5432/analytics/public/scores",
        "deliver_scores_s3": "s3://nb-data-prod/exports/scores",
        "deliver_scores_duckdb": "duckdb:/srv/warehouse/scores.duckdb/scores",
    },
    # locally, warehouse targets load into the DuckDB file and s3 copies into a folder
    "local": {
        "deliver_scores_snowflake": f"duckdb:{LOCAL_ROOT}/warehouse.duckdb/ML.SCORES",
        "deliver_scores_postgres": f"duckdb:{LOCAL_ROOT}/warehouse.duckdb/public.scores",
        "deliver_scores_s3": f"file://{LOCAL_ROOT}/data/exports/scores",
        "deliver_scores_duckdb": "duckdb:/srv/warehouse/scores.duckdb/scores",
    },
}


def _outlets(dag) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    return {task.task_id: [asset.uri for asset in task.outlets] for task in dag.tasks if task.outlets}


def _publish_tasks(dag) -> dict[str, tuple[list[str], set[str], str]]:  # type: ignore[no-untyped-def]
    """publish task id -> (outlet URIs, upstream task ids, trigger rule)."""
    return {
        task.task_id: ([a.uri for a in task.outlets], task.upstream_task_ids, task.trigger_rule)
        for task in dag.tasks
        if task.task_id.startswith("publish_")
    }


@pytest.mark.parametrize("env", sorted(EXPECTED))
def test_each_target_has_one_publish_task_whose_outlet_is_its_asset(env: str) -> None:
    """The deliver tasks have no outlets; per target one DAG-level task records the run's event."""
    from airflow.sdk import Asset
    from airflow.serialization.serialized_objects import DagSerialization

    dag = build_dag(plan_dag(load_spec(ALL_TARGETS, load_platform(PLATFORM)), env))
    expected = {
        deliver.replace("deliver_", "publish_"): ([uri], {f"shared.{deliver}"}, "all_success")
        for deliver, uri in EXPECTED[env].items()
    }
    assert _publish_tasks(dag) == expected
    assert _outlets(dag) == {task: outlets for task, (outlets, _, _) in expected.items()}
    assert dag.get_task("report").upstream_task_ids >= set(expected)  # the report still runs last
    for uri in EXPECTED[env].values():
        assert Asset(uri).uri == uri, "Airflow normalises the URI differently"
        assert check_asset_uri(uri) == uri  # a downstream spec may name it
    back = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert _outlets(back) == _outlets(dag)
    assert _publish_tasks(back) == expected


def test_a_publish_task_waits_for_every_values_delivery_to_its_target() -> None:
    loaded = load_spec(REPO / "project_configs" / "churn-demo.yaml", load_platform(PLATFORM))
    dag = build_dag(plan_dag(loaded, "local", only=("de", "fr")))
    warehouse = f"duckdb:{LOCAL_ROOT}/warehouse.duckdb"
    assert _publish_tasks(dag) == {
        "publish_churn_scores": (
            [f"{warehouse}/analytics.churn_scores"],
            {"de.deliver_churn_scores", "fr.deliver_churn_scores"},
            "all_success",
        ),
        "publish_churn_metrics": (
            [f"{warehouse}/analytics.churn_metrics"],
            {"de.deliver_churn_metrics", "fr.deliver_churn_metrics"},
            "all_success",
        ),
    }
    assert set(_outlets(dag)) == {"publish_churn_scores", "publish_churn_metrics"}  # no deliver task has one
    publish = dag.get_task("publish_churn_scores")
    assert publish.op_kwargs == {
        "asset": f"{warehouse}/analytics.churn_scores",
        "deliveries": {"de.deliver_churn_scores": "de", "fr.deliver_churn_scores": "fr"},
        "run_id": "{{ run_id }}",
    }
    assert publish.downstream_task_ids == {"report"}
    assert publish.retries == 0  # the spec's retries, as every other task
    assert publish.built_for == "local"  # checks the worker's environment (params.ChecksEnvironment)
    # clearing it reruns it alone: no instance, no delivery again
    cleared = dag.partial_subset(["publish_churn_scores"], include_upstream=False, include_downstream=False)
    assert set(cleared.task_dict) == {"publish_churn_scores"}


def test_a_shared_instance_publishes_once_after_every_values_delivery(tmp_path: Path) -> None:
    spec = (REPO / "project_configs" / "churn-demo.yaml").read_text()
    spec = spec.replace("isolation: per_item", "isolation: shared").replace(
        "../examples", str(REPO / "examples")
    )
    (tmp_path / "shared.yaml").write_text(spec)
    plan = plan_dag(load_spec(tmp_path / "shared.yaml", load_platform(PLATFORM)), "prod")
    assert [p.task_id for p in plan.publish] == ["publish_churn_scores", "publish_churn_metrics"]
    publish = plan.publish[1]
    assert publish.asset == "postgres://postgres.prod.internal:5432/analytics/analytics/churn_metrics"
    assert publish.deliveries == {
        "shared.deliver_churn_metrics__de": "de",
        "shared.deliver_churn_metrics__fr": "fr",
        "shared.deliver_churn_metrics__nl": "nl",
        "shared.deliver_churn_metrics__be": "be",
        "shared.deliver_churn_metrics__it": "it",
    }
    dag = build_dag(plan)
    assert dag.get_task("publish_churn_metrics").upstream_task_ids == set(publish.deliveries)


def test_a_target_whose_connection_the_platform_does_not_locate_has_no_asset(tmp_path: Path) -> None:
    text = PLATFORM.read_text()
    start = text.index("    warehouses:  #")
    unlocated = text[:start] + text[text.index("  prod:") :]  # preprod without `warehouses`
    (tmp_path / "platform.yaml").write_text(unlocated)
    dag = build_dag(plan_dag(load_spec(ALL_TARGETS, load_platform(tmp_path / "platform.yaml")), "preprod"))
    s3, duckdb = "s3://nb-data-preprod/exports/scores", "duckdb:/srv/warehouse/scores.duckdb/scores"
    assert _publish_tasks(dag) == {
        "publish_scores_s3": ([s3], {"shared.deliver_scores_s3"}, "all_success"),
        "publish_scores_duckdb": ([duckdb], {"shared.deliver_scores_duckdb"}, "all_success"),
    }
    assert _outlets(dag) == {"publish_scores_s3": [s3], "publish_scores_duckdb": [duckdb]}
    # the deliveries without an asset have no publish task: they lead to the report themselves
    report = dag.get_task("report").upstream_task_ids
    assert {"shared.deliver_scores_snowflake", "shared.deliver_scores_postgres"} <= report
    assert not {"shared.deliver_scores_s3", "shared.deliver_scores_duckdb"} & report


def test_the_publish_task_sets_the_events_extra_from_the_deliveries_row_counts() -> None:
    from airflow.sdk import Asset
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from dag_factory.airflow.tasks import publish_delivery

    class Ti:
        def __init__(self, xcoms: dict[str, int | None]) -> None:
            self.xcoms = xcoms

        def xcom_pull(self, task_ids: str) -> int | None:
            return self.xcoms[task_ids]

    uri = "duckdb:/srv/warehouse.duckdb/analytics.churn_scores"
    deliveries = {"de.deliver_churn_scores": "de", "fr.deliver_churn_scores": "fr"}
    events = OutletEventAccessors()
    ti = Ti({"de.deliver_churn_scores": 120, "fr.deliver_churn_scores": 95})
    assert publish_delivery(uri, deliveries, "manual__1", ti=ti, outlet_events=events) == 215
    assert events[Asset(uri)].extra == {"values": {"de": 120, "fr": 95}, "rows": 215, "run_id": "manual__1"}
    # a delivery marked success by hand returned nothing: its count and the total are unknown
    events = OutletEventAccessors()
    ti = Ti({"de.deliver_churn_scores": 120, "fr.deliver_churn_scores": None})
    assert publish_delivery(uri, deliveries, "manual__2", ti=ti, outlet_events=events) is None
    assert events[Asset(uri)].extra == {
        "values": {"de": 120, "fr": None},
        "rows": None,
        "run_id": "manual__2",
    }
    # no fan-out: the one delivery's count
    events = OutletEventAccessors()
    ti = Ti({"shared.deliver_churn_scores": 7})
    assert publish_delivery(uri, {"shared.deliver_churn_scores": None}, "r", ti=ti, outlet_events=events) == 7
    assert events[Asset(uri)].extra == {"values": {}, "rows": 7, "run_id": "r"}


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
