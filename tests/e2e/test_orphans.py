"""A worker killed mid-run never runs its teardown: `dag-factory gc` removes the orphaned instance."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dag_factory.cli.app import app
from dag_factory.compute.naming import FACTORY_TAG
from dag_factory.local.execute import TaskProgress
from tests.e2e.conftest import E2E, ENV_NAME
from tests.servers.sagemaker import NOTEBOOK_INSTANCE_TYPE, ROLE_ARN

pytestmark = pytest.mark.integration


def kill_once_preparing(rows: list[TaskProgress]) -> None:
    """Stop the whole run (scheduler, executor, task processes) once the instance exists."""
    if any(row.task_id.endswith(".prepare") and row.state == "running" for row in rows):
        raise KeyboardInterrupt


def test_instance_of_a_killed_run_is_swept_by_gc(e2e: E2E) -> None:
    job = e2e.job(["it"], project="churn-orphan")  # own dag id: the killed run stays "running"
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

    runner = CliRunner()
    base = ["gc", "--env", ENV_NAME, "--platform", str(job.platform)]
    young = runner.invoke(app, [*base, "--older-than", "6h"])
    assert young.exit_code == 0, young.output
    assert "0 orphaned instance(s)" in young.output
    dry = runner.invoke(app, [*base, "--older-than", "0s", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would delete: {orphan} (InService" in dry.output
    assert {i["NotebookInstanceName"] for i in e2e.instances()} == {orphan, "hand-made"}

    swept = runner.invoke(app, [*base, "--older-than", "0s"])
    assert swept.exit_code == 0, swept.output
    assert f"deleted: {orphan} (InService" in swept.output and "hand-made" not in swept.output
    assert [i["NotebookInstanceName"] for i in e2e.instances()] == ["hand-made"]
    assert orphan not in e2e.sm.eni.assigned
