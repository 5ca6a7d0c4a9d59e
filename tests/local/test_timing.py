"""The split of a run's wall time: start-up, the critical path through the tasks, shut-down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import yaml

from dag_factory.load.specs import load_platform, load_spec
from dag_factory.local.run_records import TaskInstanceResult
from dag_factory.local.timing import CATEGORIES, critical_path, render_split, split_run
from dag_factory.plan.planner import plan_dag
from tests.local.test_run import ROOT

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _plan(tmp_path, values):  # type: ignore[no-untyped-def]
    platform = yaml.safe_load((ROOT / "project_configs" / "platform.yaml").read_text())
    platform["environments"]["local"]["root"] = str(tmp_path / "root")
    spec = yaml.safe_load((ROOT / "project_configs" / "churn-demo.yaml").read_text())
    spec["project_dir"] = str(ROOT / "examples" / "churn-demo")
    spec["fan_out"]["values"] = values
    spec["compute"]["max_parallel"] = 1  # one lane: fr waits for de's delete_instance
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(platform))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    return plan_dag(load_spec(tmp_path / "spec.yaml", load_platform(tmp_path / "platform.yaml")), "local")


def _ti(task_id: str, start: float, end: float) -> TaskInstanceResult:
    return TaskInstanceResult(
        task_id, -1, "success", T0 + timedelta(seconds=start), T0 + timedelta(seconds=end), 1
    )


# de then fr in one lane; each: create 1 s, resolve, prepare 2 s, two notebooks, deliveries, stop, delete
RUN = [
    ("de.create_instance", 5, 6), ("de.resolve_ip", 6.5, 6.7), ("de.prepare", 7, 9),
    ("de.nb_01_features", 9.5, 14), ("de.nb_02_train", 14.5, 20),
    ("de.deliver_churn_scores", 20.5, 23), ("de.deliver_churn_metrics", 20.5, 22),
    ("de.stop_instance", 20.5, 21), ("de.delete_instance", 21.5, 22.5),
    ("fr.create_instance", 23, 24), ("fr.resolve_ip", 24.5, 24.6), ("fr.prepare", 25, 26),
    ("fr.nb_01_features", 26.5, 30), ("fr.nb_02_train", 30.5, 35),
    ("fr.deliver_churn_scores", 35.5, 38), ("fr.deliver_churn_metrics", 35.5, 37),
    ("fr.stop_instance", 35.5, 36), ("fr.delete_instance", 36.5, 37.5),
]  # fmt: skip


def test_critical_path_follows_the_last_task_back_through_the_lane(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(tmp_path, ["de", "fr"])
    steps = critical_path(plan, [_ti(*row) for row in RUN])
    assert [s.task_id for s in steps] == [
        "de.create_instance", "de.resolve_ip", "de.prepare", "de.nb_01_features", "de.nb_02_train",
        "de.stop_instance", "de.delete_instance",
        "fr.create_instance", "fr.resolve_ip", "fr.prepare", "fr.nb_01_features", "fr.nb_02_train",
        "fr.deliver_churn_scores",
    ]  # fmt: skip
    assert [s.category for s in steps][-3:] == ["notebooks", "notebooks", "delivery"]
    assert steps[7].gap == 0.5  # fr's create waited for de's delete (the lane)


def test_split_adds_up_to_the_wall_time(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(tmp_path, ["de", "fr"])
    split = split_run(plan, [_ti(*row) for row in RUN], T0, T0 + timedelta(seconds=40))
    assert split == {
        "startup": 5.0,
        "environment": 1 + 2 + 1 + 1 + 1,
        "notebooks": 4.5 + 5.5 + 3.5 + 4.5,
        "delivery": 2.5,
        "task_overhead": 0.2 + 0.5 + 0.1 + 10 * 0.5 + 0.3 + 0.4,  # resolve, stop, resolve; the gaps
        "shutdown": 2.0,
        "total": 40.0,
    }
    assert sum(split[c] for c in CATEGORIES) == split["total"]
    assert render_split(split).startswith(
        "time: 40.0 s = startup 5.0 s + environment 6.0 s + notebooks 18.0 s"
    )


def test_a_run_without_tasks_is_all_startup(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(tmp_path, ["de"])
    split = split_run(plan, [], T0, T0 + timedelta(seconds=3))
    assert split["startup"] == 3.0 and split["total"] == 3.0
    assert render_split(split) == "time: 3.0 s = startup 3.0 s"
