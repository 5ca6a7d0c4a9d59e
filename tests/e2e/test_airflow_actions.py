"""What a data engineer does by hand in Airflow, on the real scheduler (tests/servers/airflow.py), each
through the REST API exactly as the Airflow 3 UI calls it: clear a failed notebook, repair a run (clear
"only failed"), live with a delete that keeps failing, backfill dates, run one date twice.

The jobs are tiny: one or two values, one or two notebooks that write a few rows with pyarrow, one
Postgres delivery; retry delays short. Every wait is on a state in the REST API or the metadata DB.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dag_factory.cli.app import app
from dag_factory.compute.naming import instance_name
from dag_factory.plan.planner import LIFECYCLE_RETRIES
from tests.e2e.harness import (
    DATE,
    E2E,
    ENV_NAME,
    RUN_TIMEOUT_S,
    Job,
    copy_project,
    injected_source,
    notebook_errors,
    wait_for_no_step_processes,
)
from tests.notebooks import notebook_json
from tests.servers.airflow import Deployment
from tests.servers.sagemaker import wait_for_status

pytestmark = pytest.mark.integration

TABLE = "analytics.action_scores"
ROWS = {"de": 3, "fr": 4}  # rows each value's notebook writes
# every status an instance goes through from its create to its confirmed deletion (the strict fake)
LIFE = ["Pending", "InService", "Stopping", "Stopped", "Deleting", "Deleted"]

PARAMETERS = "country = 'de'\noutput_prefix = '/tmp'\nrun_id = 'manual'\nlogical_date = '2026-01-05'"
STORAGE = """\
import os
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

s3 = pafs.S3FileSystem(endpoint_override=os.environ.get("AWS_ENDPOINT_URL") or None,
                       region=os.environ.get("AWS_REGION") or "eu-west-1")
base = output_prefix.removeprefix("s3://")
n = {rows}.get(country, 2)
"""
# 01 writes the value's rows; 02 scores what 01 wrote (and fails for fr while the marker file exists)
EXTRACT = """\
with s3.open_output_stream(f"{base}/extract/rows.parquet") as out:
    pq.write_table(pa.table({"customer_id": list(range(n))}), out)
"""
SCORE = """\
if country == "fr" and os.path.exists({marker!r}):
    raise RuntimeError(f"forced failure for {{country}}")
with s3.open_input_file(f"{{base}}/extract/rows.parquet") as src:
    ids = pq.read_table(src).column("customer_id").to_pylist()
table = pa.table({{"customer_id": ids, "source_run": [run_id] * len(ids)}})
with s3.open_output_stream(f"{{base}}/predictions/part-0.parquet") as out:
    pq.write_table(table, out)
"""
# one notebook that writes the rows itself (the cheapest job)
ONE = """\
table = pa.table({"customer_id": list(range(n)), "source_run": [run_id] * n})
with s3.open_output_stream(f"{base}/predictions/part-0.parquet") as out:
    pq.write_table(table, out)
"""


# --- jobs and runs ---------------------------------------------------------------------------------
def tiny_job(
    e2e: E2E,
    project: str,
    values: list[str],
    *,
    marker: Path | None = None,
    platform: dict[str, Any] | None = None,
    **spec_fields: Any,
) -> Job:
    """Two notebooks (extract, score; score fails for fr while ``marker`` exists) or, without
    ``marker``, one; one Postgres delivery; retries of the spec kept short."""
    folder = copy_project(e2e.tmp_path / "project")
    storage = STORAGE.format(rows=repr(ROWS))
    if marker is not None:
        (folder / "notebooks" / "01_extract.ipynb").write_text(
            notebook_json(storage, EXTRACT, parameters=PARAMETERS)
        )
        (folder / "notebooks" / "02_score.ipynb").write_text(
            notebook_json(storage, SCORE.format(marker=str(marker)), parameters=PARAMETERS)
        )
        names = ["01_extract", "02_score"]
    else:
        (folder / "notebooks" / "00_score.ipynb").write_text(
            notebook_json(storage, ONE, parameters=PARAMETERS)
        )
        names = ["00_score"]
    notebooks = [{"path": f"notebooks/{name}.ipynb", "timeout": "5m"} for name in names]
    deliver = [{"to": "postgres", "table": TABLE, "files": "predictions/*.parquet"}]
    fields: dict[str, Any] = {"schedule": None, "retry_delay": "2s", **spec_fields}
    return e2e.job(
        values, project_dir=folder, notebooks=notebooks, deliver=deliver, project=project, platform=platform,
        **fields,
    )  # fmt: skip


def deploy(e2e: E2E, deployment: Deployment, job: Job) -> None:
    """``E2E.deploy_on`` (connections to this test's servers, the DAG file in the dags folder), then
    until the dag-processor has parsed it: its import error at once, if it has one."""
    e2e.deploy_on(deployment, job)
    file = deployment.dags / f"{job.dag_id.replace('-', '_')}.py"
    deadline = time.monotonic() + 180
    while True:  # until the dag-processor has parsed it; its import error at once, if any
        try:
            deployment.api("GET", f"/api/v2/dags/{job.dag_id}")
            return
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
        errors = deployment.api("GET", "/api/v2/importErrors?limit=1000")["import_errors"]
        failed = [e["stack_trace"] for e in errors if str(e["filename"]).endswith(file.name)]
        assert not failed, failed[0]
        assert time.monotonic() < deadline, f"{job.dag_id} not parsed"
        time.sleep(1)


def midnight(date: dt.date) -> dt.datetime:
    return dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC)


def wait_over(deployment: Deployment, job: Job, run_id: str) -> str:
    return deployment.wait_for_run_state(job.dag_id, run_id, ("success", "failed"), timeout=RUN_TIMEOUT_S)


def tries(deployment: Deployment, job: Job, run_id: str) -> dict[str, int]:
    return {t: int(ti["try_number"]) for t, ti in deployment.task_instances(job.dag_id, run_id).items()}


def task_states(deployment: Deployment, job: Job, run_id: str) -> dict[str, str | None]:
    return {t: ti["state"] for t, ti in deployment.task_instances(job.dag_id, run_id).items()}


def when(text: str | None) -> dt.datetime:
    assert text, "no time"
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def s3_json(e2e: E2E, job: Job, key: str) -> dict[str, Any]:
    body = e2e.sm.moto.client("s3").get_object(Bucket=job.output_bucket, Key=key)["Body"].read()
    loaded: dict[str, Any] = json.loads(body)
    return loaded


def s3_keys(e2e: E2E, job: Job, prefix: str) -> list[str]:
    answer = e2e.sm.moto.client("s3").list_objects_v2(Bucket=job.output_bucket, Prefix=prefix)
    return sorted(o["Key"].removeprefix(prefix) for o in answer.get("Contents", []))


def report(e2e: E2E, job: Job, run_id: str) -> dict[str, Any]:
    return s3_json(e2e, job, f"{job.dag_id}/{run_id}/report.json")


def value_tasks(entry: dict[str, Any]) -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in entry["tasks"]}


def source_runs(e2e: E2E, date: dt.date) -> list[str]:
    """Which runs wrote the rows of ``date`` (the notebooks' `source_run` column)."""
    with e2e.pg.connect() as conn:
        found = conn.execute(
            f"SELECT DISTINCT source_run FROM {TABLE} WHERE logical_date = %s ORDER BY 1", (date,)
        ).fetchall()
    return [str(r[0]) for r in found]


def assert_clean(e2e: E2E, job: Job) -> None:
    assert e2e.instances() == [], "a notebook instance was left behind"
    assert e2e.sm.eni.assigned == {}, "an ENI was left behind"
    assert wait_for_no_step_processes(job) == {}, "a step process was left on the instance"


def fr_failed_once(e2e: E2E, deployment: Deployment, project: str) -> tuple[Job, str, Path]:
    """A de+fr run in which fr's second notebook failed (the marker file exists); the marker."""
    marker = e2e.tmp_path / "fail-fr"
    marker.touch()
    job = tiny_job(e2e, project, ["de", "fr"], marker=marker)
    deploy(e2e, deployment, job)
    run_id = deployment.trigger(job.dag_id, midnight(DATE))
    assert wait_over(deployment, job, run_id) == "failed"
    got = task_states(deployment, job, run_id)
    assert got == {
        **{f"de.{t}": "success" for t in WORK + TEARDOWN},
        **{f"fr.{t}": "success" for t in WORK[:4] + TEARDOWN},
        "fr.nb_02_score": "failed",
        "fr.deliver_action_scores": "upstream_failed",
        "report": "success",
    }, got
    assert e2e.rows(TABLE) == {"de": ROWS["de"]}
    return job, run_id, marker


WORK = ["create_instance", "resolve_ip", "prepare", "nb_01_extract", "nb_02_score", "deliver_action_scores"]
TEARDOWN = ["stop_instance", "delete_instance"]
# what a re-run of fr must run again: its fresh instance and everything from the failed notebook on
FR_AGAIN = {f"fr.{t}" for t in WORK + TEARDOWN if t != "nb_01_extract"} | {"report"}


def assert_ran_on_fresh_instance(deployment: Deployment, job: Job, run_id: str) -> None:
    """fr's second create started after its first instance was deleted, and each step of the chain to
    the notebook started after the one before it ended: the notebook ran on the new, prepared instance."""
    tis = deployment.task_instances(job.dag_id, run_id)
    first_delete = deployment.tries(job.dag_id, run_id, "fr.delete_instance")[0]
    assert when(first_delete["end_date"]) <= when(tis["fr.create_instance"]["start_date"])
    chain = ["create_instance", "resolve_ip", "prepare", "nb_02_score"]
    for earlier, later in itertools.pairwise(chain):
        assert when(tis[f"fr.{earlier}"]["end_date"]) <= when(tis[f"fr.{later}"]["start_date"])


# --- 1. clear a failed notebook ----------------------------------------------------------------------
def test_clear_failed_notebook_reruns_its_value(e2e: E2E, airflow_deployment: Deployment) -> None:
    """The UI's Clear on fr's failed notebook (default options: downstream): Airflow clears its setups
    (create, resolve, prepare) and teardowns with it, so fr gets a new instance, prepared again, and the
    notebook succeeds on it; de is not touched; fr's rows arrive once."""
    deployment = airflow_deployment
    job, run_id, marker = fr_failed_once(e2e, deployment, "churn-clear")
    before = tries(deployment, job, run_id)
    fr_name, de_name = (instance_name(job.dag_id, run_id, v, env=ENV_NAME) for v in ("fr", "de"))
    assert e2e.sm.aws.statuses(fr_name) == LIFE

    marker.unlink()
    cleared = deployment.clear_tasks(job.dag_id, run_id, ["fr.nb_02_score"])

    assert cleared == sorted(FR_AGAIN)
    assert wait_over(deployment, job, run_id) == "success"
    after = tries(deployment, job, run_id)
    assert {t: after[t] - before[t] for t in after} == {t: int(t in FR_AGAIN) for t in before}
    assert set(task_states(deployment, job, run_id).values()) == {"success"}
    # a new instance of the same name (dag id, run id, group), created after the first was deleted
    assert e2e.sm.aws.statuses(fr_name) == LIFE + LIFE
    assert e2e.sm.aws.statuses(de_name) == LIFE
    assert_ran_on_fresh_instance(deployment, job, run_id)
    executed = s3_json(e2e, job, f"{job.dag_id}/{run_id}/fr/02_score.ipynb")
    assert notebook_errors(executed) == []
    assert e2e.rows(TABLE) == ROWS
    assert source_runs(e2e, DATE) == [run_id]
    assert_clean(e2e, job)


# --- 2. repair a run ---------------------------------------------------------------------------------
def test_repair_reruns_only_failed_values(e2e: E2E, airflow_deployment: Deployment) -> None:
    """The UI's Clear on the run with "only failed" (the repair): fr's failed notebook and its delivery
    run again, with its setups (a fresh, prepared instance) and teardowns (dag_factory.airflow.listeners),
    de is not touched, and the run report is written again, fr's tasks successful."""
    deployment = airflow_deployment
    job, run_id, marker = fr_failed_once(e2e, deployment, "churn-repair")
    before = tries(deployment, job, run_id)
    first = report(e2e, job, run_id)
    assert first["status"] == "failed"
    assert {v["value"]: v["status"] for v in first["values"]} == {"de": "success", "fr": "failed"}
    fr_name, de_name = (instance_name(job.dag_id, run_id, v, env=ENV_NAME) for v in ("fr", "de"))

    marker.unlink()
    deployment.clear_run(job.dag_id, run_id, only_failed=True)

    assert wait_over(deployment, job, run_id) == "success"
    after = tries(deployment, job, run_id)
    assert {t: after[t] - before[t] for t in after} == {t: int(t in FR_AGAIN) for t in before}
    assert set(task_states(deployment, job, run_id).values()) == {"success"}
    assert e2e.sm.aws.statuses(fr_name) == LIFE + LIFE  # a fresh instance for fr
    assert e2e.sm.aws.statuses(de_name) == LIFE
    assert_ran_on_fresh_instance(deployment, job, run_id)
    again = report(e2e, job, run_id)
    assert again["status"] == "success"
    values = {v["value"]: v for v in again["values"]}
    assert {v: e["status"] for v, e in values.items()} == {"de": "success", "fr": "success"}
    assert value_tasks(values["fr"]) == {f"fr.{t}": "success" for t in WORK + TEARDOWN}
    assert values["fr"]["rows_delivered"] == {f"postgres:{TABLE}": ROWS["fr"]}
    # both tries: the report written at the first end says fr failed, and why
    assert again["earlier"] == [{"status": "failed", "failed": {"fr": values_failure(first, "fr")}}]
    assert e2e.rows(TABLE) == ROWS
    assert_clean(e2e, job)


def values_failure(report_doc: dict[str, Any], value: str) -> str:
    failure = next(v["failure"] for v in report_doc["values"] if v["value"] == value)
    assert failure.startswith(f"{value}.nb_02_score: "), failure
    return str(failure)


# --- 3. a delete that keeps failing ------------------------------------------------------------------
class _DeleteRefused:
    """Every DeleteNotebookInstance answers AccessDeniedException (the role lost the permission) until
    ``allow()``: not retried by botocore, retried by Airflow as an infrastructure fault."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.active = True

    def allow(self) -> None:
        self.active = False


@pytest.fixture
def delete_refused(e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> Iterator[_DeleteRefused]:
    from moto.sagemaker.exceptions import SagemakerClientError
    from moto.sagemaker.models import SageMakerModelBackend

    class AccessDenied(SagemakerClientError):
        code = "AccessDeniedException"

    fault = _DeleteRefused()
    strict_delete = SageMakerModelBackend.delete_notebook_instance

    def delete_notebook_instance(backend: Any, name: str) -> None:
        if fault.active:
            fault.refused.append(name)
            raise AccessDenied(
                "User: arn:aws:sts::123456789012:assumed-role/airflow/worker is not authorized to perform: "
                f"sagemaker:DeleteNotebookInstance on resource: {name}"
            )
        strict_delete(backend, name)

    monkeypatch.setattr(SageMakerModelBackend, "delete_notebook_instance", delete_notebook_instance)
    yield fault
    fault.allow()  # whatever the test left, the instance goes
    client = e2e.sm.moto.client("sagemaker")
    for instance in e2e.instances():
        name = instance["NotebookInstanceName"]
        if instance["NotebookInstanceStatus"] == "InService":
            client.stop_notebook_instance(NotebookInstanceName=name)
            wait_for_status(client, name, "Stopped")
        if instance["NotebookInstanceStatus"] != "Deleting":
            client.delete_notebook_instance(NotebookInstanceName=name)
        wait_for_status(client, name, "Deleted")


def test_failed_delete_fails_the_run(
    e2e: E2E, airflow_deployment: Deployment, delete_refused: _DeleteRefused
) -> None:
    """The delete still fails after its retries: the instance may be left running, so the run fails
    (delete_instance's on_failure_fail_dagrun) although the work succeeded, and the run report names the
    instance."""
    deployment = airflow_deployment
    job = tiny_job(e2e, "churn-delete-fails", ["de"], retry_delay="1s")
    deploy(e2e, deployment, job)
    run_id = deployment.trigger(job.dag_id, midnight(DATE))

    assert wait_over(deployment, job, run_id) == "failed"
    name = instance_name(job.dag_id, run_id, "de", env=ENV_NAME)
    got = task_states(deployment, job, run_id)
    assert got == {
        **{f"de.{t}": "success" for t in ("create_instance", "resolve_ip", "prepare", "nb_00_score")},
        "de.deliver_action_scores": "success",
        "de.stop_instance": "success",
        "de.delete_instance": "failed",
        "report": "success",
    }, got
    delete_tries = deployment.tries(job.dag_id, run_id, "de.delete_instance")
    assert [(t["try_number"], t["state"]) for t in delete_tries] == [
        (n, "failed") for n in range(1, LIFECYCLE_RETRIES + 2)
    ]
    assert delete_refused.refused == [name] * (LIFECYCLE_RETRIES + 1)  # one call per try
    assert [(i["NotebookInstanceName"], i["NotebookInstanceStatus"]) for i in e2e.instances()] == [
        (name, "Stopped")
    ]
    assert e2e.rows(TABLE) == {"de": ROWS["de"]}  # the work itself was done
    left = report(e2e, job, run_id)
    assert left["status"] == "failed"
    assert left["left_instances"] == [{"group": "de", "instance": name, "delete_instance": "failed"}]
    (entry,) = left["values"]
    assert value_tasks(entry)["de.delete_instance"] == "failed"
    assert wait_for_no_step_processes(job) == {}


# --- 4. backfill -------------------------------------------------------------------------------------
def gc(job: Job, *args: str) -> Any:
    return CliRunner().invoke(app, ["gc", "--env", ENV_NAME, "--platform", str(job.platform), *args])


def test_backfill_three_dates(e2e: E2E, airflow_deployment: Deployment) -> None:
    """Backfill (POST /api/v2/backfills) of three dates of a daily job: the backfill's max_active_runs
    (2) applies, not the DAG's (1); each run has an instance of its own; the orphan sweeper spares the
    instances of running backfill runs; each date delivers its rows once."""
    deployment = airflow_deployment
    # start_date tomorrow: the scheduler makes no run of its own while the test runs (catchup is off,
    # the latest interval would be yesterday's otherwise); a backfill may go before the start date
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    platform = e2e.platform_settings(airflow_url=deployment.server.url)
    job = tiny_job(e2e, "churn-backfill", ["de"], platform=platform, schedule="@daily", start_date=tomorrow)
    deploy(e2e, deployment, job)
    dates = [DATE + dt.timedelta(days=n) for n in range(3)]
    run_ids = {d: f"backfill__{midnight(d).isoformat()}" for d in dates}
    names = {d: instance_name(job.dag_id, run_ids[d], "de", env=ENV_NAME) for d in dates}
    # One sshd plays every instance: two runs' steps of one group at once would share its folder (the
    # guard of one would kill the other's step as its own leftover; on SageMaker each run has a host of
    # its own). So the runs overlap, but each later run's instance stays Pending (held by the fake)
    # until the run before it is done with its instance.
    aws = e2e.sm.aws
    held = dates[1:]
    for date in held:
        aws.hold(names[date])

    try:
        backfill = deployment.backfill(job.dag_id, midnight(dates[0]), midnight(dates[-1]), max_active_runs=2)
        assert backfill["max_active_runs"] == 2
        swept: list[str] = []
        deadline = time.monotonic() + 2 * RUN_TIMEOUT_S
        while True:
            runs = deployment.dag_runs(job.dag_id)
            if len(runs) == 3 and all(r["state"] in ("success", "failed") for r in runs):
                break
            if time.monotonic() > deadline:  # say where each run stands, and what the fake holds
                states = {
                    r["dag_run_id"]: {
                        t: i.get("state")
                        for t, i in deployment.task_instances(job.dag_id, r["dag_run_id"]).items()
                    }
                    for r in runs
                }
                raise AssertionError(f"runs not done: {states}; held: {held}; instances: {e2e.instances()}")
            if held:
                before = dates[dates.index(held[0]) - 1]
                notebook = deployment.task_instances(job.dag_id, run_ids[before]).get("de.nb_00_score", {})
                if notebook.get("state") in ("success", "failed", "upstream_failed"):
                    aws.release(names[held.pop(0)])
            live = {i["NotebookInstanceName"]: i["NotebookInstanceStatus"] for i in e2e.instances()}
            if not swept and live.get(names[dates[0]]) == "InService" and names[dates[1]] in live:
                answer = gc(job, "--older-than", "0s")  # both runs are live: both instances spared
                assert answer.exit_code == 0, answer.output
                swept.append(answer.output)
            time.sleep(0.5)
    finally:
        for date in dates:
            aws.release(names[date])

    assert swept, "gc never ran while two backfill runs had their instances"
    lines = swept[0].splitlines()
    assert len(lines) == 3, swept[0]
    spared = {line.split()[1]: line for line in lines[:2]}  # in creation order: the same second here
    assert set(spared) == {names[dates[0]], names[dates[1]]}, swept[0]
    assert spared[names[dates[0]]].startswith(f"spared: {names[dates[0]]} (InService"), swept[0]
    assert spared[names[dates[1]]].startswith(f"spared: {names[dates[1]]} (Pending"), swept[0]
    assert all(line.endswith(": its run is still live") for line in spared.values()), swept[0]
    assert lines[2] == (
        f"0 orphaned instance(s) older than 0s in {ENV_NAME} (eu-west-1): 0 removed, 0 failed; "
        "2 spared (run still live)"
    )
    assert {when(r["logical_date"]).date(): r["dag_run_id"] for r in runs} == run_ids
    assert {r["dag_run_id"]: (r["run_type"], r["state"]) for r in runs} == {
        run_id: ("backfill", "success") for run_id in run_ids.values()
    }
    for date, run_id in run_ids.items():
        assert e2e.rows(TABLE, date) == {"de": ROWS["de"]}
        assert source_runs(e2e, date) == [run_id]
    # an instance of its own per run, created once and deleted by its own run's teardown
    assert len(set(names.values())) == 3
    assert {t.name for t in aws.history} == set(names.values())
    for name in names.values():
        assert aws.statuses(name) == LIFE
    # the backfill ran two runs at once although the DAG's max_active_runs is 1
    spans = [(when(r["start_date"]), when(r["end_date"])) for r in runs]
    at_once = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert at_once == 2, spans
    assert deployment.api("GET", f"/api/v2/dags/{job.dag_id}")["max_active_runs"] == 1
    assert_clean(e2e, job)


# --- 5. one date run twice ---------------------------------------------------------------------------
def test_overlapping_runs_of_one_date(e2e: E2E, airflow_deployment: Deployment) -> None:
    """A second manual run of a date: Airflow 3.3.2 refuses a second run with the same logical date
    (409); a run without a logical date whose run_after falls on that date is a second run of the same
    job date. With the DAG's max_active_runs 1 it waits, queued, until the first is over; each run has its
    own output prefix and instance; the date's rows end up once, the later run's."""
    deployment = airflow_deployment
    job = tiny_job(e2e, "churn-overlap", ["de"])
    deploy(e2e, deployment, job)
    first = deployment.trigger(job.dag_id, midnight(DATE))
    status, answer = deployment.api_error(
        "POST", f"/api/v2/dags/{job.dag_id}/dagRuns", {"logical_date": midnight(DATE).isoformat()}
    )
    assert status == 409, answer
    assert deployment.wait_for_run_state(job.dag_id, first, ("running",), timeout=120) == "running"
    second = deployment.trigger_run(
        job.dag_id, logical_date=None, run_after=midnight(DATE).replace(hour=12).isoformat()
    )
    assert second != first
    second_states: set[str] = set()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while deployment.dag_run(job.dag_id, first)["state"] not in ("success", "failed"):
        second_states.add(deployment.dag_run(job.dag_id, second)["state"])
        assert time.monotonic() < deadline
        time.sleep(0.5)

    assert second_states == {"queued"}  # waited while the first ran
    assert wait_over(deployment, job, first) == "success"
    assert wait_over(deployment, job, second) == "success"
    runs = {r: deployment.dag_run(job.dag_id, r) for r in (first, second)}
    assert runs[second]["logical_date"] is None
    assert when(runs[first]["end_date"]) <= when(runs[second]["start_date"])
    first_tis = deployment.task_instances(job.dag_id, first).values()
    second_tis = deployment.task_instances(job.dag_id, second).values()
    assert max(when(t["end_date"]) for t in first_tis) <= min(when(t["start_date"]) for t in second_tis)
    # each run its own output prefix (its run id in it) and instance; both ran the same job date
    for run_id in (first, second):
        keys = s3_keys(e2e, job, f"{job.dag_id}/{run_id}/de/")
        assert {"00_score.ipynb", "predictions/part-0.parquet"} <= set(keys), keys
        injected = injected_source(s3_json(e2e, job, f"{job.dag_id}/{run_id}/de/00_score.ipynb"))
        assert f'logical_date = "{DATE.isoformat()}"' in injected, injected
        assert f'run_id = "{run_id}"' in injected, injected
    names = [instance_name(job.dag_id, r, "de", env=ENV_NAME) for r in (first, second)]
    assert names[0] != names[1]
    assert [e2e.sm.aws.statuses(n) for n in names] == [LIFE, LIFE]
    assert e2e.rows(TABLE) == {"de": ROWS["de"]}
    assert source_runs(e2e, DATE) == [second]  # the later run replaced the earlier one's rows
    assert_clean(e2e, job)
