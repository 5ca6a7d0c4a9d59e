"""The orphan sweeper (dag_factory.ops.gc, `dag-factory gc`) against moto's SageMaker (AWS's rules and
latencies) and a real Airflow api-server (asked which runs are live; these DAGs have none)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dag_factory.cli.app import app
from dag_factory.compute.naming import FACTORY_TAG, MAX_AGE_TAG, instance_name
from dag_factory.local.airflow_home import ApiServer
from dag_factory.ops.gc import AirflowRuns, find_orphans, format_age, sagemaker_client, sweep
from tests.servers.moto import REGION, MotoServer
from tests.servers.sagemaker import NOTEBOOK_INSTANCE_TYPE, ROLE_ARN, SageMakerEnv, wait_for_status
from tests.servers.sagemaker_rules import HARDENED, StrictNotebooks

pytestmark = pytest.mark.integration

SIX_HOURS = dt.timedelta(hours=6)
FACTORY = {FACTORY_TAG: "true", "env": "e2e", "dag_id": "churn-demo", "group": "de"}


@pytest.fixture
def runs(airflow_server: ApiServer) -> AirflowRuns:
    return AirflowRuns(airflow_server.url)


def create(moto: MotoServer, name: str, tags: dict[str, str], age: dt.timedelta = dt.timedelta(0)) -> None:
    """A notebook instance with these tags, created `age` ago (moto's CreationTime is 'now')."""
    moto.client("sagemaker").create_notebook_instance(
        NotebookInstanceName=name,
        InstanceType=NOTEBOOK_INSTANCE_TYPE,
        RoleArn=ROLE_ARN,
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        **HARDENED,  # as the factory creates them (the fake refuses factory instances without it)
    )
    if age:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.sagemaker.models import sagemaker_backends

        instance = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].notebook_instances[name]
        instance.creation_time = instance.creation_time - age


def live(moto: MotoServer) -> dict[str, str]:
    answer = moto.client("sagemaker").list_notebook_instances()["NotebookInstances"]
    return {i["NotebookInstanceName"]: i["NotebookInstanceStatus"] for i in answer}


@pytest.fixture
def instances(strict_aws: StrictNotebooks, aws_env: MotoServer) -> MotoServer:
    create(aws_env, "old-tagged", FACTORY, age=dt.timedelta(hours=7))
    create(aws_env, "young-tagged", FACTORY, age=dt.timedelta(hours=1))
    create(aws_env, "old-untagged", {"owner": "someone"}, age=dt.timedelta(days=3))
    create(aws_env, "old-tag-false", {FACTORY_TAG: "false"}, age=dt.timedelta(days=3))
    create(aws_env, "old-stopped", FACTORY, age=dt.timedelta(hours=9))
    create(aws_env, "old-other-env", {**FACTORY, "env": "prod"}, age=dt.timedelta(days=3))
    create(aws_env, "young-short-lived", {**FACTORY, MAX_AGE_TAG: "3600"}, age=dt.timedelta(hours=2))
    sm = aws_env.client("sagemaker")
    wait_for_status(sm, "old-stopped", "InService")
    sm.stop_notebook_instance(NotebookInstanceName="old-stopped")
    for name in live(aws_env):
        wait_for_status(sm, name, "Stopped" if name == "old-stopped" else "InService")
    return aws_env


def test_only_old_tagged_instances_of_this_environment_are_orphans(instances: MotoServer) -> None:
    orphans = find_orphans(sagemaker_client(REGION), "e2e")
    assert [(o.name, o.status) for o in orphans] == [
        ("old-stopped", "Stopped"), ("old-tagged", "InService"), ("young-short-lived", "InService")
    ]  # fmt: skip
    assert orphans[1].tags["dag_id"] == "churn-demo"
    assert dt.timedelta(hours=7) <= orphans[1].age < dt.timedelta(hours=7, minutes=5)
    assert orphans[1].describe() == "old-tagged (InService, age 7h0m, dag_id churn-demo, group de)"
    # --older-than replaces each instance's own max age
    older = find_orphans(sagemaker_client(REGION), "e2e", dt.timedelta(hours=3))
    assert [o.name for o in older] == ["old-stopped", "old-tagged"]
    assert [o.name for o in find_orphans(sagemaker_client(REGION), "prod")] == ["old-other-env"]


def test_sweep_stops_and_deletes_orphans_and_nothing_else(instances: MotoServer, runs: AirflowRuns) -> None:
    results = sweep(sagemaker_client(REGION), "e2e", runs, SIX_HOURS, poll_s=0.1)
    assert {r.orphan.name: r.action for r in results} == {"old-tagged": "deleted", "old-stopped": "deleted"}
    assert live(instances) == {
        "young-tagged": "InService",
        "old-untagged": "InService",
        "old-tag-false": "InService",
        "old-other-env": "InService",
        "young-short-lived": "InService",
    }


def test_dry_run_changes_nothing(instances: MotoServer, runs: AirflowRuns) -> None:
    before = live(instances)
    results = sweep(sagemaker_client(REGION), "e2e", runs, SIX_HOURS, dry_run=True)
    assert sorted(r.orphan.name for r in results) == ["old-stopped", "old-tagged"]
    assert {r.action for r in results} == {"would delete"}
    assert live(instances) == before


def test_now_is_injectable(strict_aws: StrictNotebooks, aws_env: MotoServer, runs: AirflowRuns) -> None:
    create(aws_env, "fresh", FACTORY)
    client = sagemaker_client(REGION)
    wait_for_status(client, "fresh", "InService")
    assert find_orphans(client, "e2e", SIX_HOURS) == []
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=7)
    assert [o.name for o in find_orphans(client, "e2e", SIX_HOURS, now=later)] == ["fresh"]
    assert [r.action for r in sweep(client, "e2e", runs, SIX_HOURS, now=later, poll_s=0.1)] == ["deleted"]
    assert live(aws_env) == {}


def test_airflow_that_cannot_be_asked_stops_the_sweep(instances: MotoServer) -> None:
    from dag_factory.ops.gc import RunCheckError

    nobody = AirflowRuns("http://127.0.0.1:9", timeout_s=2)
    with pytest.raises(
        RunCheckError, match=r"cannot ask Airflow at http://127\.0\.0\.1:9 which runs are live"
    ):
        sweep(sagemaker_client(REGION), "e2e", nobody, SIX_HOURS, poll_s=0.1)
    assert "old-tagged" in live(instances)


def test_instance_of_a_killed_worker_is_swept(sagemaker_env: SageMakerEnv, runs: AirflowRuns) -> None:
    """The factory's own create sensor made it; the worker died before the teardown ran."""
    from dag_factory.airflow.sensors import CreateNotebookInstanceSensor
    from dag_factory.plan.report import CREATED_XCOM

    run_id = "scheduled__2026-01-05T04:00:00+00:00~1"
    sensor = CreateNotebookInstanceSensor(
        task_id="create_instance",
        dag_id_for_name="churn-demo",
        env="e2e",
        group="fr",
        tags={"project": "churn-demo", "owner": "growth", "env": "e2e"},
        instance_type=NOTEBOOK_INSTANCE_TYPE,
        role_arn=ROLE_ARN,
        volume_size_gb=5,
        subnet_id=sagemaker_env.subnet_id,
        security_group_ids=sagemaker_env.security_group_ids,
        lifecycle_config=None,
        instance_security={"direct_internet_access": False, "root_access": False, "kms_key_id": None},
        max_age_s=3600,
        aws_conn_id="aws_default",
    )
    pushed: dict[str, Any] = {}

    class _TaskInstance:  # the sensor records the instance's creation time for the run report
        def xcom_push(self, key: str, value: Any) -> None:
            pushed[key] = value

    context = {"run_id": run_id, "ti": _TaskInstance()}
    deadline = time.monotonic() + 60
    while not (done := sensor.poke(context)):  # what the scheduler does between reschedules
        assert time.monotonic() < deadline, "the create sensor did not see the instance in service in 60 s"
        time.sleep(0.1)
    assert set(pushed) == {CREATED_XCOM}
    name = done.xcom_value  # type: ignore[union-attr]
    assert name == instance_name("churn-demo", run_id, "fr", env="e2e")
    create(sagemaker_env.moto, "not-ours", {}, age=dt.timedelta(days=1))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1, minutes=1)

    (result,) = sweep(sagemaker_client(REGION), "e2e", runs, now=later, poll_s=0.1)  # its own max age: 1h
    assert (result.orphan.name, result.action) == (name, "deleted")
    assert (
        result.orphan.run_id == run_id
        and result.orphan.tags["run_id"] == "scheduled__2026-01-05T04:00:00+00:00=7E1"
    )
    assert result.orphan.tags["group"] == "fr"
    assert live(sagemaker_env.moto) == {"not-ours": "InService"}
    assert sagemaker_env.eni.assigned == {}  # its ENI went with it


def _platform(tmp_path: Path, airflow_url: str = "http://127.0.0.1:9") -> Path:
    settings: dict[str, Any] = {
        "version": 1,
        "environments": {
            "e2e": {
                "backend": "sagemaker",
                "account_id": "123456789012",
                "region": REGION,
                "role_arn": ROLE_ARN,
                "subnet_id": "subnet-0a1b2c3d",
                "security_group_ids": ["sg-0a1b2c3d"],
                "buckets": {"code": "code-b", "data": "data-b", "intermediate": "inter-b", "output": "out-b"},
                "airflow_url": airflow_url,
            },
            "local": {
                "backend": "local",
                "buckets": {"code": "code", "data": "data", "intermediate": "inter", "output": "runs"},
            },
        },
    }
    no_airflow = dict(settings["environments"]["e2e"])
    del no_airflow["airflow_url"]
    settings["environments"]["no_airflow"] = no_airflow
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def test_cli_sweeps_with_zero_age_and_dry_run(
    instances: MotoServer, tmp_path: Path, airflow_server: ApiServer
) -> None:
    base = ["gc", "--env", "e2e", "--platform", str(_platform(tmp_path, airflow_server.url))]
    runner = CliRunner()
    dry = runner.invoke(app, [*base, "--older-than", "0s", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.count("would delete: ") == 4  # the young ones too, at 0s
    assert "untagged" not in dry.output and "tag-false" not in dry.output and "other-env" not in dry.output
    assert len(live(instances)) == 7

    default_age = runner.invoke(app, base)  # each instance's own max age (6h without one)
    assert default_age.exit_code == 0, default_age.output
    assert "deleted: old-tagged (InService, age 7h0m" in default_age.output
    assert "deleted: young-short-lived (InService, age 2h0m" in default_age.output
    assert (
        "3 orphaned instance(s) past their max age in e2e (eu-west-1): 3 removed, 0 failed; 0 spared"
        in default_age.output
    )
    assert set(live(instances)) == {"young-tagged", "old-untagged", "old-tag-false", "old-other-env"}

    swept = runner.invoke(app, [*base, "--older-than", "0s"])
    assert swept.exit_code == 0, swept.output
    assert set(live(instances)) == {"old-untagged", "old-tag-false", "old-other-env"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "ee2e"], "--env 'ee2e' is not an environment of"),
        (["--env", "local"], "environment 'local' runs on local"),
        (["--env", "e2e", "--older-than", "six hours"], "--older-than: invalid duration"),
        (["--env", "no_airflow"], "environment 'no_airflow' in"),
    ],
)
def test_cli_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["gc", "--platform", str(_platform(tmp_path)), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_without_platform_file_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAG_FACTORY_PLATFORM", raising=False)
    result = CliRunner().invoke(app, ["gc", "--env", "prod"])
    assert result.exit_code == 2 and "no platform.yaml found" in result.output


def test_age_format() -> None:
    assert format_age(dt.timedelta(days=2, hours=3, minutes=4, seconds=59)) == "2d3h4m"
    assert format_age(dt.timedelta(seconds=30)) == "0m"
