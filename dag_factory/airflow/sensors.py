"""SageMaker notebook-instance tasks: reschedule-mode sensors that are safe to retry and safe as teardowns.

Each poke makes one status read and at most one API call (dag_factory.compute.sagemaker.advance, the
life cycle shared with the orphan sweeper); between pokes the task is rescheduled, so it holds neither a
worker slot nor a slot of the SageMaker API pool while AWS starts, stops or deletes an instance (minutes
on AWS). The instance name is derived from (environment, dag id, run id, group) at run time, so a
retried create finds its own instance and a teardown finds an instance even when create failed before it
returned; a create that meets an instance of its name recognises its own by the run's tags
(compute.sagemaker.create_instance). Every create sends the platform's hardening (instance_security).
A reschedule-mode sensor works under a real scheduler and under ``dag.test(use_executor=True)``;
a deferrable trigger would need a triggerer process, which ``dag.test`` does not run.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException

from dag_factory.airflow.params import ChecksEnvironment
from dag_factory.compute import aws
from dag_factory.compute.naming import ENV_TAG, FACTORY_TAG, MAX_AGE_TAG, encode_tag_value, instance_name
from dag_factory.compute.sagemaker import (
    Goal,
    NameTaken,
    advance,
    create_instance,
    is_permanent,
    security_fields,
)
from dag_factory.plan.report import CREATED_XCOM, DELETED_XCOM


class _InstanceSensor(ChecksEnvironment, BaseSensorOperator):
    """Moves this run's instance one step towards ``goal`` per poke; done when it is there."""

    goal: Goal = "gone"
    ui_color = "#f0e4d0"

    def __init__(
        self, *, dag_id_for_name: str, env: str, group: str, aws_conn_id: str = "aws_default", **kwargs: Any
    ):
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)
        self.dag_id_for_name = dag_id_for_name
        self.env = env
        self.group = group
        self.aws_conn_id = aws_conn_id

    def client(self) -> Any:
        from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

        return SageMakerHook(aws_conn_id=self.aws_conn_id, config=aws.retry_config()).conn  # type: ignore[no-untyped-call]

    def instance(self, context: Any) -> str:
        return instance_name(self.dag_id_for_name, str(context["run_id"]), self.group, env=self.env)

    def create(self, client: Any, name: str, context: Any) -> None:
        raise AirflowFailException(f"notebook instance {name} does not exist")

    def poke(self, context: Any) -> bool | PokeReturnValue:
        client, name = self.client(), self.instance(context)
        try:
            progress = advance(client, name, self.goal, lambda: self.create(client, name, context))
        except NameTaken as exc:
            raise AirflowFailException(f"{exc} (not retried)") from exc
        except aws.api_errors() as exc:
            if is_permanent(exc):
                raise AirflowFailException(f"{exc} (not retried: AWS refused the request itself)") from exc
            self.log.warning("AWS call failed (%s): an infrastructure fault, the task retries", exc)
            raise
        self.log.info("notebook instance %s: %s -> %s", name, progress.status, progress.step)
        if progress.step == "done":
            self.reached(client, name, context)
            return PokeReturnValue(is_done=True, xcom_value=name)
        return False

    def reached(self, client: Any, name: str, context: Any) -> None:
        """Called once the instance is at the goal (the run report's times are recorded here)."""


class CreateNotebookInstanceSensor(_InstanceSensor):
    """Create (or, on a retry, reuse, restart or replace) this run's instance; done when InService."""

    goal: Goal = "in_service"

    def __init__(
        self,
        *,
        instance_type: str,
        role_arn: str,
        volume_size_gb: int,
        subnet_id: str,
        security_group_ids: list[str],
        lifecycle_config: str | None,
        instance_security: dict[str, Any],
        tags: dict[str, str],
        max_age_s: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.instance_type = instance_type
        self.role_arn = role_arn
        self.volume_size_gb = volume_size_gb
        self.subnet_id = subnet_id
        self.security_group_ids = security_group_ids
        self.lifecycle_config = lifecycle_config
        self.instance_security = dict(instance_security)  # platform.InstanceSecurity, as plain data
        self.instance_tags = tags
        self.max_age_s = max_age_s

    def tags(self, context: Any) -> dict[str, str]:
        """The spec's tags (checked at validate) and the run-time ones (encoded for AWS)."""
        runtime = {
            FACTORY_TAG: "true",
            ENV_TAG: self.env,
            "dag_id": self.dag_id_for_name,
            "run_id": str(context["run_id"]),
            "group": self.group,
            MAX_AGE_TAG: str(self.max_age_s),
        }
        return {**self.instance_tags, **{k: encode_tag_value(v) for k, v in runtime.items()}}

    def create(self, client: Any, name: str, context: Any) -> None:
        kwargs: dict[str, Any] = {
            "NotebookInstanceName": name,
            "InstanceType": self.instance_type,
            "RoleArn": self.role_arn,
            "VolumeSizeInGB": self.volume_size_gb,
            "SubnetId": self.subnet_id,
            "SecurityGroupIds": list(self.security_group_ids),
            "Tags": [{"Key": k, "Value": v} for k, v in self.tags(context).items()],
            **security_fields(**self.instance_security),
        }
        if self.lifecycle_config:
            kwargs["LifecycleConfigName"] = self.lifecycle_config
        create_instance(client, kwargs)

    def reached(self, client: Any, name: str, context: Any) -> None:
        # when SageMaker made it (a retry that reuses the instance keeps the first time): the run
        # report's instance-hours start here
        described = client.describe_notebook_instance(NotebookInstanceName=name)
        context["ti"].xcom_push(key=CREATED_XCOM, value=described["CreationTime"].isoformat())


class StopNotebookInstanceSensor(_InstanceSensor):
    """Stop this run's instance if it runs; done when it is stopped, failed, deleting or gone."""

    goal: Goal = "stopped"


class DeleteNotebookInstanceSensor(_InstanceSensor):
    """Delete this run's instance (stopping it first if needed); done when it is gone."""

    goal: Goal = "gone"

    def reached(self, client: Any, name: str, context: Any) -> None:
        # the run report's instance-hours end when the deletion is confirmed
        context["ti"].xcom_push(key=DELETED_XCOM, value=dt.datetime.now(dt.UTC).isoformat())
