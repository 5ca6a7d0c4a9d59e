"""The step operators' retry: what an earlier try left running is stopped before what it wrote is set
aside (dag_factory.airflow.steps with dag_factory.plan.guard.stop_earlier_tries), for real processes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from dag_factory.airflow.steps import GuardedBashOperator
from dag_factory.deliver.tries import set_aside_failed_tries
from dag_factory.plan.guard import StepBounds, stop_earlier_tries

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
        step_label="notebook notebooks/train.ipynb",
        infra_retries=1,
        outputs_prefix=str(prefix),
        stop_earlier_tries=stop_earlier_tries(bounds),
    )
    ti = SimpleNamespace(task_id="de.nb_train", try_number=2, dag_id="d", run_id="manual__1", map_index=-1)
    step.execute({"ti": ti, "task_instance": ti, "run_id": "manual__1"})

    assert leftover.wait(timeout=10) == 0  # stopped by the retry, through its trap
    assert (tmp_path / "seen-by-try-2").read_text() == ""  # try 2 started from a clean prefix
    assert sorted(p.name for p in prefix.iterdir()) == []
    aside = tmp_path / "runs" / "manual__1" / ".dag-factory" / "failed-tries" / "de" / "de.nb_train" / "try-1"
    assert sorted(p.name for p in aside.iterdir()) == ["early.csv", "late.csv"]
