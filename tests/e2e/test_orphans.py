"""The orphan sweeper on the e2e harness: it removes what a killed run left behind, and never an instance
of a live run or of another environment."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from dag_factory.cli.app import app
from dag_factory.compute.naming import FACTORY_TAG
from dag_factory.local.run_records import TaskProgress
from tests.e2e.harness import E2E, ENV_NAME, Job
from tests.servers.airflow_api import AirflowApi, quote
from tests.servers.sagemaker import NOTEBOOK_INSTANCE_TYPE, ROLE_ARN, wait_for_status
from tests.servers.sagemaker_rules import HARDENED

pytestmark = pytest.mark.integration


def kill_once_preparing(rows: list[TaskProgress]) -> None:
    """Stop the whole run (scheduler, executor, task processes) once the instance exists."""
    if any(row.task_id.endswith(".prepare") and row.state == "running" for row in rows):
        raise KeyboardInterrupt


def gc(job: Job, *args: str) -> Any:
    return CliRunner().invoke(app, ["gc", "--env", ENV_NAME, "--platform", str(job.platform), *args])


def with_airflow(e2e: E2E, **overrides: Any) -> dict[str, Any]:
    return e2e.platform_settings(airflow_url=e2e.server.url, **overrides)


def airflow_api(e2e: E2E, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One call to the e2e api-server's REST API (``path`` below /api/v2, its parts URL-quoted here)."""
    quoted = "/".join(quote(part) for part in path.split("/"))
    status, answered = AirflowApi(e2e.server.url).answer(method, f"/api/v2/{quoted}", body)
    assert status == 200
    return dict(answered)


def run_state(e2e: E2E, dag_id: str, run_id: str) -> str:
    return str(airflow_api(e2e, "GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"])


def mark_failed(e2e: E2E, dag_id: str, run_id: str) -> None:
    airflow_api(e2e, "PATCH", f"dags/{dag_id}/dagRuns/{run_id}", {"state": "failed"})


def skip_task(e2e: E2E, dag_id: str, run_id: str, task_id: str) -> None:
    path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
    airflow_api(e2e, "PATCH", path, {"new_state": "skipped"})


def test_instance_of_a_killed_run_is_swept_by_gc(e2e: E2E) -> None:
    job = e2e.job(["it"], project="churn-orphan", platform=with_airflow(e2e))  # own dag id
    sm = e2e.sm.moto.client("sagemaker")
    sm.create_notebook_instance(  # someone else's instance, no factory tag: never touched
        NotebookInstanceName="hand-made", InstanceType=NOTEBOOK_INSTANCE_TYPE, RoleArn=ROLE_ARN
    )
    result = e2e.run(job, on_progress=kill_once_preparing)
    assert result.interrupted and result.state == "failed"
    assert result.ti("it.delete_instance").state is None, "the teardown must not have run"

    orphan = result.xcom("it.create_instance")
    live = {i["NotebookInstanceName"]: i for i in e2e.instances()}
    assert set(live) == {orphan, "hand-made"}
    tags = {
        t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=live[orphan]["NotebookInstanceArn"])["Tags"]
    }
    assert tags[FACTORY_TAG] == "true" and tags["dag_id"] == "churn-orphan" and tags["group"] == "it"
    assert tags["env"] == ENV_NAME and int(tags["dag-factory-max-age"]) > 3600

    young = gc(job)  # each instance's own max age: this one is minutes old
    assert young.exit_code == 0, young.output
    assert "0 orphaned instance(s) past their max age" in young.output
    # the killed run is still "running" in Airflow's database: gc cannot tell it from a live one
    spared = gc(job, "--older-than", "0s")
    assert spared.exit_code == 0, spared.output
    assert f"spared: {orphan} (InService" in spared.output and ": its run is still live" in spared.output
    # Marking the run failed does not end it while its teardowns (stop/delete_instance) have not run:
    # Airflow keeps the run "running" so the scheduler still runs them, and they delete the instance.
    # gc must spare it: that is the run's own job (airflow.api.common.mark_tasks, "Set the dag run
    # state only if there is no pending teardown").
    mark_failed(e2e, job.dag_id, result.run_id)
    assert run_state(e2e, job.dag_id, result.run_id) == "running"
    pending_teardown = gc(job, "--older-than", "0s", "--dry-run")
    assert pending_teardown.exit_code == 0, pending_teardown.output
    assert f"spared: {orphan} (InService" in pending_teardown.output, pending_teardown.output
    # What ends it for good: the on-call engineer skips the teardowns and marks the run failed. Now
    # nothing in Airflow will delete the instance: an orphan.
    for teardown in ("it.stop_instance", "it.delete_instance", "report"):  # the run report is one too
        skip_task(e2e, job.dag_id, result.run_id, teardown)
    mark_failed(e2e, job.dag_id, result.run_id)
    assert run_state(e2e, job.dag_id, result.run_id) == "failed"
    dry = gc(job, "--older-than", "0s", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"would delete: {orphan} (InService" in dry.output
    assert {i["NotebookInstanceName"] for i in e2e.instances()} == {orphan, "hand-made"}

    swept = gc(job, "--older-than", "0s")
    assert swept.exit_code == 0, swept.output
    assert f"deleted: {orphan} (InService" in swept.output and "hand-made" not in swept.output
    assert [i["NotebookInstanceName"] for i in e2e.instances()] == ["hand-made"]
    assert orphan not in e2e.sm.eni.assigned


def test_gc_spares_live_run(e2e: E2E) -> None:
    job = e2e.job(["de"], project="churn-live", platform=with_airflow(e2e))
    outputs: list[str] = []

    def sweep_while_training(rows: list[TaskProgress]) -> None:
        if not outputs and any(r.task_id == "de.nb_02_train" and r.state == "running" for r in rows):
            answer = gc(job, "--older-than", "0s")
            outputs.append(answer.output)
            assert answer.exit_code == 0, answer.output

    result = e2e.run(job, on_progress=sweep_while_training)

    assert outputs, "gc never ran during the notebook"
    name = result.xcom("de.create_instance")
    assert f"spared: {name} (InService" in outputs[0], outputs[0]
    assert "0 removed, 0 failed; 1 spared (run still live)" in outputs[0]
    assert result.state == "success", result.error  # the run was not disturbed
    assert e2e.sm.aws.statuses(name)[-3:] == ["Stopped", "Deleting", "Deleted"]  # by its own teardown
    assert e2e.rows("analytics.churn_scores") == {"de": 800}


def test_gc_spares_other_environment(e2e: E2E) -> None:
    job = e2e.job(["de"], platform=with_airflow(e2e))
    sm = e2e.sm.moto.client("sagemaker")
    for name, env in [("nb-ours", ENV_NAME), ("nb-theirs", "staging")]:
        sm.create_notebook_instance(
            NotebookInstanceName=name, InstanceType=NOTEBOOK_INSTANCE_TYPE, RoleArn=ROLE_ARN,
            Tags=[{"Key": FACTORY_TAG, "Value": "true"}, {"Key": "env", "Value": env},
                  {"Key": "dag_id", "Value": "churn-demo"}, {"Key": "group", "Value": "de"},
                  {"Key": "run_id", "Value": "scheduled__2026-01-01T04:00:00+00:00"}], **HARDENED,
        )  # fmt: skip
        wait_for_status(sm, name, "InService")

    swept = gc(job, "--older-than", "0s")

    assert swept.exit_code == 0, swept.output
    assert "deleted: nb-ours (InService" in swept.output and "nb-theirs" not in swept.output
    assert [i["NotebookInstanceName"] for i in e2e.instances()] == ["nb-theirs"]
