"""A run that ran no task of any value is not a success: `dag-factory run` exits 1 and says why."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
import yaml

from dag_factory.local.execute import RunResult
from dag_factory.local.run import LocalJob, nothing_ran, prepare_job
from dag_factory.local.run_records import TaskInstanceResult

CASES = Path(__file__).resolve().parents[1] / "validate" / "contract"
DATE = dt.date(2026, 1, 5)


@pytest.fixture
def job(tmp_path: Path) -> LocalJob:
    shutil.copytree(CASES / "typo_parameter", tmp_path / "project")
    platform = yaml.safe_load((CASES / "platform.yaml").read_text())
    platform["environments"]["local"]["root"] = str(tmp_path / "root")
    (tmp_path / "project" / "platform.yaml").write_text(yaml.safe_dump(platform))
    return prepare_job(
        tmp_path / "project" / "spec.yaml", "local", tmp_path / "project" / "platform.yaml", []
    )


def _result(state: str, tasks: dict[str, str | None], *, interrupted: bool = False) -> RunResult:
    tis = [TaskInstanceResult(task_id, -1, s, None, None, 1 if s else 0) for task_id, s in tasks.items()]
    return RunResult("typo", "manual__1", state, tis, [], 1.0, Path("run.log"), 0, interrupted=interrupted)


def test_a_run_whose_values_ran_nothing_says_why(job: LocalJob) -> None:
    untouched = {
        f"{group.group_id}.{task.task_id}": None for group in job.plan.groups for task in group.tasks
    }
    why = nothing_ran(job, _result("success", {**untouched, "report": "success"}), DATE)
    assert why == (
        "the run for 2026-01-05 ended success but Airflow ran no task of any country: check that the date is "
        "on or after the spec's start_date 2026-01-05, and the Airflow log of the run."
    )
    # no task instance at all (the date was not scheduled): the same
    assert nothing_ran(job, _result("success", {}), DATE) == why


@pytest.mark.parametrize("state", ["success", "failed", "up_for_retry"])
def test_a_run_in_which_a_value_task_ran_is_judged_by_its_state(job: LocalJob, state: str) -> None:
    result = _result("failed", {"de.create_instance": state, "fr.create_instance": None})
    assert nothing_ran(job, result, DATE) is None


def test_an_interrupted_run_is_not_called_empty(job: LocalJob) -> None:
    assert nothing_ran(job, _result("failed", {"de.create_instance": None}, interrupted=True), DATE) is None
