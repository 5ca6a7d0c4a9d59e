"""The split of a run's wall time: CLI, metadata DB, Airflow start, the critical path through the tasks,
shut-down."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from dag_factory.load.specs import load_platform, load_spec
from dag_factory.local.run_records import TaskInstanceResult, read_task_instances
from dag_factory.local.timing import CATEGORIES, RunClock, critical_path, render_split, split_run
from dag_factory.plan.planner import plan_dag
from tests.local.projects import RUN_DATE, one_notebook_job
from tests.notebooks import notebook
from tests.paths import REPO

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _plan(tmp_path, values):  # type: ignore[no-untyped-def]
    platform = yaml.safe_load((REPO / "project_configs" / "platform.yaml").read_text())
    platform["environments"]["local"]["root"] = str(tmp_path / "root")
    spec = yaml.safe_load((REPO / "project_configs" / "churn-demo.yaml").read_text())
    spec["project_dir"] = str(REPO / "examples" / "churn-demo")
    spec["fan_out"]["values"] = values
    spec["compute"]["max_parallel"] = 1  # one lane: fr waits for de's delete_instance
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(platform))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    return plan_dag(load_spec(tmp_path / "spec.yaml", load_platform(tmp_path / "platform.yaml")), "local")


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _ti(task_id: str, start: float, end: float) -> TaskInstanceResult:
    return TaskInstanceResult(task_id, -1, "success", _at(start), _at(end), 1)


def _clock(deployed: float, home_ready: float, finished: float) -> RunClock:
    return RunClock(T0, _at(deployed), _at(home_ready), _at(finished))


# de then fr in one lane; each: create 1 s, resolve, prepare, two notebooks, deliveries, stop, delete;
# then the DAG-level tasks, as Airflow runs them: a publish task per target after every value's
# delivery to it, and the report, a teardown after everything, the run's last task
RUN = [
    ("de.create_instance", 5, 6), ("de.resolve_ip", 6.5, 6.7), ("de.prepare", 7, 9),
    ("de.nb_01_features", 9.5, 14), ("de.nb_02_train", 14.5, 20),
    ("de.deliver_churn_scores", 20.5, 23), ("de.deliver_churn_metrics", 20.5, 22),
    ("de.stop_instance", 20.5, 21), ("de.delete_instance", 21.5, 22.5),
    ("fr.create_instance", 23, 24), ("fr.resolve_ip", 24.5, 24.6), ("fr.prepare", 25, 26),
    ("fr.nb_01_features", 26.5, 30), ("fr.nb_02_train", 30.5, 35),
    ("fr.deliver_churn_scores", 35.5, 38), ("fr.deliver_churn_metrics", 35.5, 37),
    ("fr.stop_instance", 35.5, 36), ("fr.delete_instance", 36.5, 37.5),
    ("publish_churn_metrics", 37.5, 38), ("publish_churn_scores", 38.5, 39), ("report", 39.5, 40.2),
]  # fmt: skip


def test_critical_path_follows_the_last_task_back_through_the_lane(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(tmp_path, ["de", "fr"])
    steps = critical_path(plan, [_ti(*row) for row in RUN])
    assert [s.task_id for s in steps] == [
        "de.create_instance", "de.resolve_ip", "de.prepare", "de.nb_01_features", "de.nb_02_train",
        "de.stop_instance", "de.delete_instance",
        "fr.create_instance", "fr.resolve_ip", "fr.prepare", "fr.nb_01_features", "fr.nb_02_train",
        "fr.deliver_churn_scores", "publish_churn_scores", "report",
    ]  # fmt: skip
    assert [s.category for s in steps][-5:] == [
        "notebooks", "notebooks", "delivery", "task_overhead", "task_overhead"
    ]  # fmt: skip
    assert steps[7].gap == 0.5  # fr's create waited for de's delete (the lane)


def test_the_report_ending_the_run_leads_back_to_the_tasks_not_to_overhead(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The bug of issue 29: the report (the run's last task) had no known upstream task, so the path was
    the report alone and everything before it a gap: notebooks 0, task overhead all of the run."""
    plan = _plan(tmp_path, ["de"])
    one = [row for row in RUN if not row[0].startswith("fr.")]
    steps = critical_path(plan, [_ti(*row) for row in one])
    assert [s.task_id for s in steps][-3:] == ["de.deliver_churn_scores", "publish_churn_scores", "report"]
    split = split_run(plan, [_ti(*row) for row in one], _clock(1, 2.5, 42))
    assert (split["environment"], split["notebooks"], split["delivery"]) == (1 + 2, 4.5 + 5.5, 2.5)


def test_split_adds_up_to_the_wall_time(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(tmp_path, ["de", "fr"])
    split = split_run(plan, [_ti(*row) for row in RUN], _clock(deployed=1, home_ready=2.5, finished=42))
    assert split == {
        "cli": 1.0,
        "db": 1.5,
        "airflow": 2.5,
        "environment": 1 + 2 + 1 + 1 + 1,
        "notebooks": 4.5 + 5.5 + 3.5 + 4.5,
        "delivery": 2.5,
        # resolve, stop, resolve, publish, report; the gaps
        "task_overhead": round(0.2 + 0.5 + 0.1 + 0.5 + 0.7 + 12 * 0.5 + 0.3 + 0.4, 2),
        "shutdown": 1.8,
        "total": 42.0,
    }
    assert list(split) == [*CATEGORIES, "total"]
    assert round(sum(split[c] for c in CATEGORIES), 2) == split["total"]
    assert render_split(split) == (
        "time: 42.0 s = CLI 1.0 s + metadata DB 1.5 s + Airflow start 2.5 s + environments 6.0 s + "
        "notebooks 18.0 s + delivery 2.5 s + task overhead 8.7 s + shut-down 1.8 s"
    )


def test_the_parts_add_up_to_the_total_to_the_hundredth_whatever_the_microseconds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(tmp_path, ["de", "fr"])
    odd = [
        (task, start + 0.004321 * i, end + 0.004321 * i + 0.000777)
        for i, (task, start, end) in enumerate(RUN)
    ]
    split = split_run(plan, [_ti(*row) for row in odd], _clock(1.003333, 2.506666, 42.123456))
    assert split["total"] == 42.12
    assert round(sum(split[c] for c in CATEGORIES), 2) == split["total"]


def test_a_retried_or_unfinished_task_is_not_on_the_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(tmp_path, ["de"])
    tis = [
        _ti("de.create_instance", 5, 6),
        TaskInstanceResult("de.resolve_ip", -1, "failed", _at(6.5), None, 1),
    ]
    split = split_run(plan, tis, _clock(1, 2, 10))
    assert split["environment"] == 1.0 and split["shutdown"] == 4.0
    assert round(sum(split[c] for c in CATEGORIES), 2) == split["total"] == 10.0


def test_a_run_without_tasks_is_cli_db_and_airflow_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(tmp_path, ["de"])
    split = split_run(plan, [], _clock(0.5, 1.25, 3))
    assert (split["cli"], split["db"], split["airflow"], split["total"]) == (0.5, 0.75, 1.75, 3.0)
    assert render_split(split) == "time: 3.0 s = CLI 0.5 s + metadata DB 0.8 s + Airflow start 1.8 s"


def test_process_started_is_when_the_interpreter_started() -> None:
    """The CLI's wall time starts with its process, as a shell's `time` sees it (10 ms clock ticks)."""
    code = (
        "from datetime import datetime, UTC; first = datetime.now(UTC)\n"
        "from dag_factory.local.timing import process_started\n"
        "import json; print(json.dumps([process_started().isoformat(), first.isoformat()]))"
    )
    before = datetime.now(UTC)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    after = datetime.now(UTC)
    started, first = (datetime.fromisoformat(t) for t in json.loads(done.stdout))
    tick = timedelta(milliseconds=20)  # the start is in clock ticks, the uptime in hundredths
    assert before - tick <= started <= first + tick and first <= after


SLEEP_S = 6.0
# papermill's start, the kernel's start and shut-down, the executed notebook written and rendered to HTML,
# on top of the sleep: measured 2.55 and 2.71 s at load average 4-5, 9.62 s at load 11 with two other
# local runs of tests/local/test_run.py beside it on the 2 cores (pytest -n 2): 15 s leaves room for that
NOTEBOOK_TOLERANCE_S = 15.0


@pytest.mark.integration
def test_the_time_split_gives_a_sleeping_notebook_its_time(tmp_path: Path) -> None:
    """One value, one notebook that sleeps SLEEP_S, through `dag-factory run` as a user runs it: the
    notebooks' share holds the sleep and little more, the task overhead none of it, the parts add up to
    the wall time; the `time:` line, the timings file and the run report show the same split."""
    nb = notebook(f"import time\ntime.sleep({SLEEP_S})", parameters="country = 'xx'")
    spec, platform = one_notebook_job(tmp_path, "sleeper", nb, fan_out={"name": "country", "values": ["de"]})
    command = [sys.executable, "-m", "dag_factory.cli.app", "run", str(spec), "--platform", str(platform)]
    done = subprocess.run(
        [*command, "--date", str(RUN_DATE)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    (timings,) = (tmp_path / "root" / "airflow" / "logs" / "runs").glob("*.timings.json")
    written = json.loads(timings.read_text())
    split, wall = written["split"], written["split"]["total"]
    tis = read_task_instances(tmp_path / "root" / "airflow" / "airflow.db", "sleeper", written["run_id"])
    (notebook_task,) = [ti for ti in tis if ".nb_" in ti.task_id]
    print(f"split: {split}")  # the tolerance's measure (pytest -s)
    assert split["notebooks"] == pytest.approx(notebook_task.duration, abs=0.011)  # the task, all of it
    assert SLEEP_S <= split["notebooks"] <= SLEEP_S + NOTEBOOK_TOLERANCE_S, split
    assert split["task_overhead"] < wall - SLEEP_S, split
    assert abs(sum(split[c] for c in CATEGORIES) - wall) <= 0.05, split
    assert render_split(split) in done.stdout.splitlines()
    (report,) = (tmp_path / "root" / "runs" / "sleeper").glob("*/report.json")
    assert json.loads(report.read_text())["time_split"] == split
