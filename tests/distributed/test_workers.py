"""Workers that differ, die or take over: what a distributed deployment adds to a run (trivial notebooks)."""

from __future__ import annotations

import contextlib

import psutil
import pytest

from tests.distributed.deployment import Deployment

pytestmark = pytest.mark.integration  # one Celery cluster, one xdist worker (tests/conftest.py)


def stop_remote_processes(run_id: str) -> list[psutil.Process]:
    """Kill the processes on the "instance" (the sshd's children) still working for ``run_id``; returns
    them (none once the run is over, unless a task's remote work outlived it)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(run_id in part for part in proc.info["cmdline"] or []):
                found.append(proc)
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return found


def test_worker_without_environment_setting_runs_nothing_under_another_backend(
    deployment: Deployment,
) -> None:
    """(c) a worker started without DAG_FACTORY_ENV parses the DAG file on its own: it must not run the
    sagemaker DAG's tasks as the local backend's (a work directory on the worker, rows in DuckDB). It
    cannot load the DAG, so Airflow ends its try (after its own startup reschedules) and, the SageMaker
    tasks having retries, a worker that is set up runs the retry on SageMaker."""
    cluster = deployment.cluster
    create = "de.create_instance"
    # the retry waits 10 s, not the spec's default 5 min: long enough to take worker-noenv off the queue
    spec = deployment.tick_spec("tick-noenv", ["de"], retries=0, retry_delay="10s")
    (job,) = deployment.deploy([spec])
    cluster.start_worker("worker-noenv", factory_env=None)
    try:
        with deployment.only_worker("worker-noenv"):
            run_id = deployment.run(job, wait=False)

            def first_try_over() -> bool:
                tries = deployment.tries(job, run_id)
                return any(t.task_id == create and t.state in ("up_for_retry", "failed") for t in tries)

            deployment.wait_for("create_instance's first try ended on the worker without the setting",
                                first_try_over, timeout=600)  # fmt: skip
            cluster.consume("worker-noenv", False)
        # the configured workers take over: the retry, the notebook and the teardowns run there
        for worker in cluster.workers():
            if worker != "worker-noenv":
                cluster.consume(worker, True)
        state = cluster.wait_run(job.dag_id, run_id)
    finally:
        cluster.stop_worker("worker-noenv")

    tries = deployment.tries(job, run_id)
    assert state == "success", (tries, cluster.logs())
    # what worker-noenv picked up, from its own logs (Airflow keeps no history row of a try that its
    # scheduler ended on a state mismatch, as it ends these)
    folder = cluster.root / "worker-noenv" / "logs" / f"dag_id={job.dag_id}" / f"run_id={run_id}"
    picked = {int(log.stem.removeprefix("attempt=")): log for log in folder.glob("task_id=*/attempt=*.log")}
    assert picked and {log.parent.name for log in picked.values()} == {f"task_id={create}"}, picked
    for log in picked.values():  # each try ended at start-up: the DAG file refused to load, nothing ran
        text = log.read_text(errors="replace")
        assert "DAG_FACTORY_ENV" in text and "Dag not found during start up" in text, text[-3000:]
    [final] = [t for t in tries if t.task_id == create and t.state == "success"]
    assert final.hostname in ("worker-1", "worker-2") and final.try_number > max(picked), (tries, picked)
    # nothing ran as the local backend: no work directory, no local bucket; the instance is gone
    assert not (deployment.tmp_path / "local-backend").exists()
    assert deployment.e2e.instances() == []
    assert deployment.e2e.rows(deployment.tick_table) == {"de": 1}


def test_worker_killed_mid_notebook_task_retried_on_the_other_worker(deployment: Deployment) -> None:
    """(d) SIGKILL worker-1's whole process tree while its notebook task runs: Airflow fails the task
    (heartbeat timeout) and retries it on worker-2, the teardowns run there, nothing is left behind and
    the rows are delivered once."""
    cluster = deployment.cluster
    spec = deployment.tick_spec("tick-killed", ["de"], params={"seconds": 900, "sleep_once": True},
                                retries=1, retry_delay="5s")  # fmt: skip
    (job,) = deployment.deploy([spec])
    marker = deployment.sm.sshd.home / ".tick-{run_id}-de"
    run_id, leftover = "", []
    try:
        with deployment.only_worker("worker-1"):  # the next test's deployment fixture restarts it
            run_id = deployment.run(job, wait=False)
            started = marker.with_name(marker.name.format(run_id=run_id))
            deployment.wait_for("the notebook sleeping on the instance", started.exists)
            cluster.consume("worker-2", True)
            cluster.components["worker-1"].kill()
            state = cluster.wait_run(job.dag_id, run_id)
        print(deployment.timeline(job, run_id))
    finally:
        leftover = [p.pid for p in stop_remote_processes(run_id)] if run_id else []

    tries = deployment.tries(job, run_id)
    assert state == "success", (tries, cluster.logs())
    notebook = [(t.try_number, t.hostname, t.state) for t in tries if t.task_id == "de.nb_tick"]
    assert [(n, host) for n, host, _ in notebook] == [(1, "worker-1"), (2, "worker-2")], notebook
    assert notebook[-1][2] == "success"
    teardowns = {t.task_id: (t.hostname, t.state) for t in tries if t.task_id.endswith("_instance")}
    assert teardowns["de.stop_instance"] == teardowns["de.delete_instance"] == ("worker-2", "success")
    assert deployment.e2e.instances() == []
    assert deployment.sm.eni.assigned == {}
    assert deployment.e2e.rows(deployment.tick_table) == {"de": 1}
    # the guard on the instance noticed its SSH session was gone and killed the notebook's tree
    assert not leftover, f"the killed task's remote processes were still running: {leftover}"
