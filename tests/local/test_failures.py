"""Why a task failed, from the task logs and executed notebooks of real failed runs.

Each folder in failures/ is one failed task as a local run left it (paths shortened to /tmp/run):
task.log (the last attempt's Airflow task log), executed.ipynb when papermill wrote one, task.json
(what the plan knows of the task) and expected.txt, the exact reason the run summary shows
(REGENERATE_GOLDEN=1 rewrites it). The runs themselves: tests/local/test_run.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dag_factory.local.failures import Failure, explain_failure, group_failure
from dag_factory.local.run_records import TaskInstanceResult
from dag_factory.plan.model import GroupPlan, NotebookArgs, PrepareArgs, TaskPlan, TeardownArgs
from tests.golden import check_golden

HERE = Path(__file__).resolve().parent / "failures"
CASES = sorted(p for p in HERE.iterdir() if (p / "task.json").is_file())


def _notebook(task_id: str, timeout_s: int = 40, notebook: str = "", output_notebook: str = "") -> TaskPlan:
    """A notebook task: what failures read of it (its timeout, notebook and executed notebook) as given."""
    args = NotebookArgs(
        command="", guarded_step="", notebook=notebook, kernel="python3", timeout_s=timeout_s,
        output_notebook=output_notebook, source="", output_prefix="", notebook_retries=0, value="de",
        parameters={}, notebook_parameters={}, link_style="file", region=None,
    )  # fmt: skip
    return TaskPlan(task_id, "notebook", (), args)


def _case(case: Path) -> tuple[TaskPlan, TaskInstanceResult, Path | None]:
    meta = json.loads((case / "task.json").read_text())
    if meta["kind"] == "notebook":
        task = _notebook(meta["task_id"], meta["timeout_s"], meta["notebook"])
    else:
        prepare = PrepareArgs(command="", installs_tools="", timeout_s=meta["timeout_s"])
        task = TaskPlan(meta["task_id"], meta["kind"], (), prepare)
    now = datetime(2026, 1, 5, tzinfo=UTC)
    ti = TaskInstanceResult(f"de.{meta['task_id']}", -1, "failed", now, now, 2, case / "task.log")
    executed = case / "executed.ipynb"
    return task, ti, executed if executed.is_file() else None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_failure_case(case: Path) -> None:
    task, ti, executed = _case(case)
    check_golden(explain_failure(task, ti, executed).text(task.task_id) + "\n", case / "expected.txt")


def test_every_failure_kind_has_a_case() -> None:
    kinds = {explain_failure(*_case(case)).kind for case in CASES}
    assert {"missing input", "notebook error", "timed out", "kernel died", "install failure",
            "infrastructure error"} <= kinds  # fmt: skip


def test_tasks_that_did_not_fail_say_their_state() -> None:
    task = _notebook("nb_x")
    assert explain_failure(task, None) == Failure("not run")
    skipped = TaskInstanceResult("de.nb_x", -1, "upstream_failed", None, None, 0)
    assert explain_failure(task, skipped).text("nb_x") == "nb_x: upstream_failed"


def test_the_group_shows_its_first_failed_task_not_the_teardown(tmp_path: Path) -> None:
    case = HERE / "install_failure"
    prepare, failed, _ = _case(case)
    later = _notebook("nb_work", output_notebook=str(tmp_path / "none.ipynb"))
    delete = TaskPlan(
        "delete_instance", "delete_instance", (), TeardownArgs(group="de", dag_id="d", timeout_s=60)
    )
    group = GroupPlan("de", ("de",), (prepare, later, delete))
    tis = [
        failed,
        TaskInstanceResult("de.nb_work", -1, "upstream_failed", None, None, 0),
        TaskInstanceResult("de.delete_instance", -1, "failed", None, None, 1, case / "task.log"),
    ]
    reason = group_failure(group, tis, "manual__1")
    assert reason == (HERE / "install_failure" / "expected.txt").read_text().strip()


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("timed out after 40s (the step's timeout)", "nb_x: timed out after 40s"),
        (
            "timed out after 30s: the group's compute.timeout (100s) is up",
            "nb_x: timed out after 30s: the group's compute.timeout (100s) is up",
        ),
        (
            "timed out: the group's compute.timeout (100s) is used up",
            "nb_x: timed out: the group's compute.timeout (100s) is used up",
        ),
    ],
)
def test_the_guards_timeouts_say_which_limit_ended_the_step(tmp_path: Path, said: str, expected: str) -> None:
    """Each line the guard (plan/guard.py) writes when a limit ends a step, as the summary shows it."""
    log = tmp_path / "attempt=1.log"
    log.write_text(json.dumps({"level": "info", "event": f"dag-factory: {said}"}) + "\n")
    now = datetime(2026, 1, 5, tzinfo=UTC)
    ti = TaskInstanceResult("de.nb_x", -1, "failed", now, now, 1, log)
    task = _notebook("nb_x", timeout_s=40)
    assert explain_failure(task, ti).text(task.task_id) == expected
