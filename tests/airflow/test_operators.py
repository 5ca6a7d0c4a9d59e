"""The step operators' retry: what an earlier try left running is stopped before what it wrote is set
aside (dag_factory.airflow.operators with dag_factory.plan.guard.stop_earlier_tries), for real processes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from dag_factory.airflow.operators import GuardedBashOperator, StepPolicy
from dag_factory.deliver.tries import set_aside_failed_tries
from dag_factory.plan.guard import StepBounds, step_marker

pytestmark = pytest.mark.integration  # starts processes and waits for their end


def _wait_for(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_a_retry_stops_the_earlier_try_before_setting_its_outputs_aside(tmp_path: Path) -> None:
    """Try 1's notebook is still alive when try 2 starts (its SSH session dropped, its worker died) and
    writes one more file when it is stopped, as a notebook's `finally` or a flush on SIGTERM would:
    that file must be set aside with the rest, not left for delivery to load twice."""
    workdir, prefix = tmp_path / "work" / "de", tmp_path / "runs" / "manual__1" / "de"
    prefix.mkdir(parents=True)
    set_aside_failed_tries(str(prefix), "de.nb_train", 1, None)  # try 1 found an empty prefix
    bounds = StepBounds(str(workdir), "nb_train", timeout_s=60, group_budget_s=600)
    leftover = subprocess.Popen(
        ["bash", "-c", f"trap 'echo late > {prefix}/late.csv; exit 0' TERM; "
         f"echo early > {prefix}/early.csv; while :; do sleep 0.05; done"],
        env={**os.environ, "DAG_FACTORY_STEP": f"{workdir}#nb_train#4242"},  # try 1's marker
    )  # fmt: skip
    _wait_for(prefix / "early.csv")

    step = GuardedBashOperator(
        task_id="nb_train",
        bash_command=f"ls {prefix} > {tmp_path}/seen-by-try-2",
        policy=StepPolicy(
            step_label="notebook notebooks/train.ipynb",
            infra_retries=1,
            outputs_prefix=str(prefix),
            guarded_step=step_marker(bounds),
        ),
    )
    ti = SimpleNamespace(task_id="de.nb_train", try_number=2, dag_id="d", run_id="manual__1", map_index=-1)
    step.execute({"ti": ti, "task_instance": ti, "run_id": "manual__1"})

    assert leftover.wait(timeout=10) == 0  # stopped by the retry, through its trap
    assert (tmp_path / "seen-by-try-2").read_text() == ""  # try 2 started from a clean prefix
    assert sorted(p.name for p in prefix.iterdir()) == []
    aside = tmp_path / "runs" / "manual__1" / ".dag-factory" / "failed-tries" / "de" / "de.nb_train" / "try-1"
    assert sorted(p.name for p in aside.iterdir()) == ["early.csv", "late.csv"]


def test_a_failed_notebook_raises_with_its_located_error_and_the_executed_notebook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The task's error (its ERROR line in the log) is the notebook's located error the step printed,
    with where the executed notebook is; the log names the step, not its whole script."""
    from airflow.sdk.exceptions import AirflowFailException

    from dag_factory.plan.guard import EXIT_NOTEBOOK_ERROR

    located = "notebook error in nb/train.ipynb cell 3, line 3 `raise RuntimeError(x)`: RuntimeError: fr"
    script = (
        f"echo papermill output; echo 'dag-factory: {located}' >&2; echo after; exit {EXIT_NOTEBOOK_ERROR}"
    )
    step = GuardedBashOperator(
        task_id="nb_train",
        bash_command=script,
        policy=StepPolicy(
            step_label="notebook nb/train.ipynb",
            infra_retries=3,
            executed_notebook=str(tmp_path / "fr" / "train.ipynb"),
        ),
    )
    ti = SimpleNamespace(task_id="fr.nb_train", try_number=1, dag_id="d", run_id="manual__1", map_index=-1)
    with pytest.raises(AirflowFailException) as failed:
        step.execute({"ti": ti, "task_instance": ti, "run_id": "manual__1"})
    assert str(failed.value) == (
        f"notebook nb/train.ipynb failed (exit status {EXIT_NOTEBOOK_ERROR}: {located}): the notebook's "
        "own error: not retried (set notebooks[].retries to retry it); executed notebook: "
        f"{tmp_path}/fr/train.html"
    )
    logged = capsys.readouterr().out  # Airflow's task log, as the task runner prints it
    assert "Running command: the script of notebook nb/train.ipynb, under dag-factory's guard" in logged
    assert "echo papermill output" not in logged  # the script itself is not logged
    assert "[error    ] notebook nb/train.ipynb failed (exit status 85: notebook error in" in logged


def test_a_notebook_step_tells_where_its_executed_notebook_is(tmp_path: Path) -> None:
    executed = str(tmp_path / "de" / "train.ipynb")
    step = GuardedBashOperator(
        task_id="nb_train", bash_command="echo done",
        policy=StepPolicy(step_label="notebook nb/train.ipynb", infra_retries=0, executed_notebook=executed),
    )  # fmt: skip
    ti = SimpleNamespace(task_id="de.nb_train", try_number=1, dag_id="d", run_id="manual__1", map_index=-1)
    told = step.execute({"ti": ti, "task_instance": ti, "run_id": "manual__1"})
    assert (told["executed_notebook"], told["html"]) == (executed, str(tmp_path / "de" / "train.html"))
    assert told["duration_s"] >= 0


def test_the_prepare_step_installs_the_tools_every_later_step_calls(tmp_path: Path) -> None:
    """The guard and its tools come from the worker's package, installed by the group's first step on
    its host; a later step's command only calls them, and fails as a missing input where they are not."""
    from airflow.sdk.exceptions import AirflowFailException

    from dag_factory.plan.guard import tools, tools_dir, under_installed_guard

    workdir = tmp_path / "work" / "de"
    ti = SimpleNamespace(task_id="de.nb_train", try_number=1, dag_id="d", run_id="manual__1", map_index=-1)
    context = {"ti": ti, "task_instance": ti, "run_id": "manual__1"}
    notebook = GuardedBashOperator(
        task_id="nb_train",
        bash_command=under_installed_guard(
            f"echo ran > {tmp_path}/ran", StepBounds(str(workdir), "nb", 60, 600)
        ),
        policy=StepPolicy(step_label="notebook nb/train.ipynb", infra_retries=3),
    )
    with pytest.raises(AirflowFailException, match="missing input: the tools of dag-factory are not in"):
        notebook.execute(context)  # not retried: only clearing the prepare task installs them

    prepare = GuardedBashOperator(
        task_id="prepare",
        bash_command=under_installed_guard("true", StepBounds(str(workdir), "prepare", 60, 600)),
        policy=StepPolicy(step_label="prepare", infra_retries=1, installs_tools=str(workdir)),
    )
    prepare.execute(context)
    installed = Path(tools_dir(str(workdir)))
    assert {p.name: p.read_text() for p in installed.iterdir()} == tools()
    notebook.execute(context)
    assert (tmp_path / "ran").read_text() == "ran\n"
