"""A try that dies halfway leaves part files behind; the next try's outputs are delivered, once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from dag_factory.local.run_records import TaskProgress, read_task_instances
from tests.e2e.harness import DEMO_PARAMETERS, E2E, Job, copy_project, wait_for_no_step_processes
from tests.notebooks import notebook_json
from tests.servers.airflow import Deployment

pytestmark = pytest.mark.integration

TABLE = "analytics.once_scores"

# writes its predictions as a uniquely named part file, as Spark or pyarrow datasets do; its first try
# writes half of them and then dies (the kernel exits: papermill's exit 138) or is killed while it waits
ONCE = """\
import os, uuid
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

s3 = pafs.S3FileSystem(endpoint_override=os.environ.get("AWS_ENDPOINT_URL") or None,
                       region=os.environ.get("AWS_REGION") or "eu-west-1")

def write(n):
    path = f"{output_prefix.removeprefix('s3://')}/predictions/part-{uuid.uuid4().hex}.parquet"
    with s3.open_output_stream(path) as out:
        pq.write_table(pa.table({"customer_id": list(range(n))}), out)
"""
FIRST_TRY = """\
import time
flag = "first-try-done"
if not os.path.exists(flag):
    open(flag, "w").close()
    write(150)
    {then}
write(300)
"""


def once_job(e2e: E2E, then: str, **fields: object) -> Job:
    project = copy_project(e2e.tmp_path / "project")
    text = notebook_json(ONCE, FIRST_TRY.format(then=then), parameters=DEMO_PARAMETERS)
    (project / "notebooks" / "00_once.ipynb").write_text(text)
    notebooks = [{"path": "notebooks/00_once.ipynb", "timeout": "15m"}]
    deliver = [{"to": "postgres", "table": TABLE, "files": "predictions/*.parquet"}]
    return e2e.job(["de"], project_dir=project, notebooks=notebooks, deliver=deliver, **fields)


def s3_keys(e2e: E2E, job: Job, run_id: str) -> list[str]:
    s3 = e2e.sm.moto.client("s3")
    answer = s3.list_objects_v2(Bucket=job.output_bucket, Prefix=f"{job.dag_id}/{run_id}/")
    return sorted(o["Key"].removeprefix(f"{job.dag_id}/{run_id}/") for o in answer.get("Contents", []))


def test_retry_delivers_exactly_once(e2e: E2E) -> None:
    job = once_job(e2e, "os._exit(1)  # the kernel dies: an infrastructure-style failure")
    result = e2e.run(job)

    assert result.state == "success", result.error
    nb = result.ti("de.nb_00_once")
    assert nb.try_number == 2, nb
    assert e2e.rows(TABLE) == {"de": 300}  # not 450: try 1's half was set aside, not delivered
    keys = s3_keys(e2e, job, result.run_id)
    parts = [k for k in keys if k.startswith("de/predictions/")]
    aside = [k for k in keys if k.startswith(".dag-factory/failed-tries/de/de.nb_00_once/try-1/predictions/")]
    assert len(parts) == 1 and len(aside) == 1, keys  # the failed try's part kept for debugging
    assert "de/00_once.ipynb" in keys


def test_worker_killed_mid_notebook(e2e: E2E, airflow_deployment: Deployment) -> None:
    """SIGKILL the worker running a notebook (the LocalExecutor process and the task process under it):
    nobody is left to stop the remote work, so the instance does; the scheduler finds the task without
    a heartbeat and retries it; the teardown deletes the instance; the rows arrive once."""
    job = once_job(e2e, "time.sleep(600)", project="churn-killed", schedule=None)
    killed: list[int] = []
    gone_before_retry: list[bool] = []

    def try_number(run_id: str) -> int:
        rows = read_task_instances(airflow_deployment.db, job.dag_id, run_id)
        return next(t.try_number for t in rows if t.task_id == "de.nb_00_once")

    def kill_the_worker(rows: list[TaskProgress]) -> None:
        run_id = airflow_deployment.last_run_id
        running = any(r.task_id == "de.nb_00_once" and r.state == "running" for r in rows)
        if not killed:
            partial_written = any("/predictions/" in k for k in s3_keys(e2e, job, run_id))
            if running and partial_written and job.step_processes():
                killed.extend(worker_processes(airflow_deployment, job.dag_id, run_id, "de.nb_00_once"))
                for pid in killed:
                    os.kill(pid, signal.SIGKILL)
        elif not gone_before_retry and not job.step_processes():
            gone_before_retry.append(try_number(run_id) == 1)  # the instance side noticed, not the retry

    result = e2e.run_deployed(airflow_deployment, job, on_progress=kill_the_worker)

    assert killed, "the notebook never ran"
    assert gone_before_retry == [True]
    assert result.state == "success", result.error
    assert result.ti("de.nb_00_once").try_number == 2  # failed by the heartbeat check, retried
    assert wait_for_no_step_processes(job) == {}
    assert e2e.instances() == [] and e2e.sm.eni.assigned == {}
    assert e2e.rows(TABLE) == {"de": 300}


def worker_processes(deployment: Deployment, dag_id: str, run_id: str, task_id: str) -> list[int]:
    """The LocalExecutor worker running the task and the task process it forked (their process titles
    carry the task instance's id)."""
    import sqlite3

    with sqlite3.connect(f"file:{deployment.db}?mode=ro", uri=True) as conn:
        (ti_id,) = conn.execute(
            "SELECT id FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?",
            (dag_id, run_id, task_id),
        ).fetchone()
    wanted = str(ti_id).replace("-", "")
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            title = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("airflow worker") and wanted in title.replace("-", ""):
            found.append(int(cmdline.parent.name))
    assert found, f"no worker process for {task_id} ({ti_id})"
    return found
