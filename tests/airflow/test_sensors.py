"""The notebook-instance sensors: what a create sends, and a name held by someone else."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from dag_factory.airflow.sensors import CreateNotebookInstanceSensor
from dag_factory.compute import aws
from dag_factory.compute.naming import instance_name
from tests.servers.sagemaker import NOTEBOOK_INSTANCE_TYPE, ROLE_ARN
from tests.servers.sagemaker_rules import HARDENED, StrictNotebooks

RUN_ID = "scheduled__2026-01-05T04:00:00+00:00"
SECURITY = {"direct_internet_access": False, "root_access": False, "kms_key_id": None}


def _sensor(env: str = "prod", security: dict[str, Any] | None = None) -> CreateNotebookInstanceSensor:
    return CreateNotebookInstanceSensor(
        task_id="create_instance",
        dag_id_for_name="churn-model",
        env=env,
        group="de",
        instance_type=NOTEBOOK_INSTANCE_TYPE,
        role_arn=ROLE_ARN,
        volume_size_gb=30,
        subnet_id="subnet-0a1b",
        security_group_ids=["sg-0a1b"],
        lifecycle_config=None,
        instance_security=security or SECURITY,
        tags={"project": "churn-model", "owner": "growth", "env": env},
        max_age_s=3600,
    )


class _Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def create_notebook_instance(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        return {"NotebookInstanceArn": "arn:aws:sagemaker:eu-west-1:123456789012:notebook-instance/x"}


def test_create_sends_the_hardening_and_names_the_environment() -> None:
    context = {"run_id": RUN_ID}
    for env, security in [("prod", SECURITY), ("preprod", {**SECURITY, "kms_key_id": "alias/notebooks"})]:
        sensor, client = _sensor(env, security), _Recorder()
        sensor.create(client, sensor.instance(context), context)
        [request] = client.requests
        assert request["NotebookInstanceName"] == instance_name("churn-model", RUN_ID, "de", env=env)
        assert request["NotebookInstanceName"].startswith(f"nb-{env}-churn-model-de-")
        assert {k: request.get(k) for k in ("DirectInternetAccess", "RootAccess", "KmsKeyId")} == {
            "DirectInternetAccess": "Disabled",
            "RootAccess": "Disabled",
            "KmsKeyId": security["kms_key_id"],
        }
        assert request["InstanceMetadataServiceConfiguration"] == {
            "MinimumInstanceMetadataServiceVersion": "2"
        }
        assert {"Key": "env", "Value": env} in request["Tags"]


@pytest.mark.integration
def test_a_name_held_by_another_instance_fails_the_create_without_a_retry(
    strict_aws: StrictNotebooks,
) -> None:
    sensor = _sensor()
    name = sensor.instance({"run_id": RUN_ID})
    aws.client("sagemaker").create_notebook_instance(
        NotebookInstanceName=name,
        InstanceType=NOTEBOOK_INSTANCE_TYPE,
        RoleArn=ROLE_ARN,
        Tags=[{"Key": "dag-factory", "Value": "true"}, {"Key": "env", "Value": "preprod"}],
        **HARDENED,
    )
    strict_aws.hide(name, 1)  # the poke's first look does not find it, so it creates: the name is taken
    with pytest.raises(AirflowFailException, match=f"notebook instance {name} exists and is not this run's"):
        sensor.poke({"run_id": RUN_ID})
    assert not {"Stopping", "Deleting"} & set(strict_aws.statuses(name))  # left alone
