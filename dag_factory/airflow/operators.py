"""SageMaker notebook-instance operators that are safe to retry and safe as teardowns.

They extend the amazon provider's operators: the instance name is derived from (dag id, run id,
group) at run time, so a retried create finds its own instance and a teardown can find an
instance even when create failed before it returned. The life cycle itself (which call moves an
instance on, what to wait for) is dag_factory.compute.sagemaker's, shared with the orphan sweeper.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerCreateNotebookOperator,
    SageMakerDeleteNotebookOperator,
    SageMakerStopNotebookOperator,
)

from dag_factory.compute.naming import FACTORY_TAG, instance_name
from dag_factory.compute.sagemaker import Goal, drive
from dag_factory.plan.report import CREATED_XCOM, DELETED_XCOM


class _RunScoped:
    """Mixin: the instance name comes from the run, not from the DAG file.

    Each operator keeps its own __init__: Airflow's operator metaclass wraps every operator
    class's __init__, and a plain mixin's __init__ would bypass that wrapping.
    """

    dag_id_for_name: str
    group: str
    poll_seconds: float
    wait_timeout_s: float
    instance_name: str

    def drive_to(
        self, context: Any, client: Any, goal: Goal, create: Callable[[], None] | None = None
    ) -> str:
        """Name this run's instance, then move it to ``goal`` (compute.sagemaker's life cycle)."""
        self.instance_name = instance_name(self.dag_id_for_name, str(context["run_id"]), self.group)
        return drive(
            client,
            self.instance_name,
            goal,
            timeout_s=self.wait_timeout_s,
            poll_s=self.poll_seconds,
            create=create,
        )


class CreateNotebookInstanceOperator(_RunScoped, SageMakerCreateNotebookOperator):
    """Create (or, on a retry, reuse or restart) this run's notebook instance; wait until InService."""

    def __init__(
        self,
        *,
        dag_id_for_name: str,
        group: str,
        tags: dict[str, str],
        poll_seconds: float = 15,
        wait_timeout_s: float = 1800,
        **kwargs: Any,
    ) -> None:
        super().__init__(instance_name="(set at run time)", wait_for_completion=False, **kwargs)
        self.dag_id_for_name = dag_id_for_name
        self.group = group
        self.instance_tags = tags
        self.poll_seconds = poll_seconds
        self.wait_timeout_s = wait_timeout_s

    def execute(self, context: Any) -> str:
        tags = {
            **self.instance_tags,
            FACTORY_TAG: "true",
            "dag_id": self.dag_id_for_name,
            "run_id": str(context["run_id"]),
            "group": self.group,
        }
        kwargs = dict(self.create_instance_kwargs)
        kwargs["Tags"] = [{"Key": k, "Value": v[:256]} for k, v in tags.items()]
        self.create_instance_kwargs = kwargs
        create = lambda: SageMakerCreateNotebookOperator.execute(self, context)  # noqa: E731
        self.drive_to(context, self.hook.conn, "in_service", create)
        # when SageMaker made it (a retry that reuses the instance keeps the first time): the run report's
        # instance-hours start here
        described = self.hook.conn.describe_notebook_instance(NotebookInstanceName=self.instance_name)
        context["ti"].xcom_push(key=CREATED_XCOM, value=described["CreationTime"].isoformat())
        return self.instance_name


class StopNotebookInstanceOperator(_RunScoped, SageMakerStopNotebookOperator):
    """Stop this run's instance if it runs; nothing to do if it is stopped or gone."""

    def __init__(
        self,
        *,
        dag_id_for_name: str,
        group: str,
        poll_seconds: float = 15,
        wait_timeout_s: float = 1800,
        **kwargs: Any,
    ) -> None:
        super().__init__(instance_name="(set at run time)", wait_for_completion=False, **kwargs)
        self.dag_id_for_name = dag_id_for_name
        self.group = group
        self.poll_seconds = poll_seconds
        self.wait_timeout_s = wait_timeout_s

    def execute(self, context: Any) -> None:
        status = self.drive_to(context, self.hook.conn, "stopped")
        self.log.info("notebook instance %s: %s", self.instance_name, status)


class DeleteNotebookInstanceOperator(_RunScoped, SageMakerDeleteNotebookOperator):
    """Delete this run's instance (stopping it first if needed); nothing to do if it is gone."""

    def __init__(
        self,
        *,
        dag_id_for_name: str,
        group: str,
        poll_seconds: float = 15,
        wait_timeout_s: float = 1800,
        **kwargs: Any,
    ) -> None:
        super().__init__(instance_name="(set at run time)", wait_for_completion=False, **kwargs)
        self.dag_id_for_name = dag_id_for_name
        self.group = group
        self.poll_seconds = poll_seconds
        self.wait_timeout_s = wait_timeout_s

    def execute(self, context: Any) -> None:
        self.drive_to(context, self.hook.conn, "gone")
        self.log.info("notebook instance %s is gone", self.instance_name)
        context["ti"].xcom_push(key=DELETED_XCOM, value=dt.datetime.now(dt.UTC).isoformat())
