"""SageMaker notebook-instance operators that are safe to retry and safe as teardowns.

They extend the amazon provider's operators: the instance name is derived from (dag id, run id,
group) at run time, so a retried create finds its own instance and a teardown can find an
instance even when create failed before it returned. Stop and delete tolerate an instance that
is already gone; delete stops a running instance first (SageMaker refuses to delete it).
"""

from __future__ import annotations

import time
from typing import Any

from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerCreateNotebookOperator,
    SageMakerDeleteNotebookOperator,
    SageMakerStopNotebookOperator,
)

from dag_factory.gc import GONE, status_of
from dag_factory.naming import FACTORY_TAG, instance_name


def wait_for_status(client: Any, name: str, wanted: set[str], timeout_s: float, poll_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status = status_of(client, name)
        if status in wanted:
            return status
        if status == "Failed" and "Failed" not in wanted:
            raise RuntimeError(f"notebook instance {name} is Failed")
        if time.monotonic() > deadline:
            raise TimeoutError(f"notebook instance {name} still {status} after {timeout_s:.0f}s")
        time.sleep(poll_s)


class _RunScoped:
    """Mixin: the instance name comes from the run, not from the DAG file.

    Each operator keeps its own __init__: Airflow's operator metaclass wraps every operator
    class's __init__, and a plain mixin's __init__ would bypass that wrapping.
    """

    dag_id_for_name: str
    group: str
    poll_seconds: float
    wait_timeout_s: float

    def resolve_name(self, context: Any) -> str:
        return instance_name(self.dag_id_for_name, str(context["run_id"]), self.group)


class CreateNotebookInstanceOperator(_RunScoped, SageMakerCreateNotebookOperator):
    """Create (or, on a retry, reuse) this run's notebook instance and wait until InService."""

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
        self.instance_name = self.resolve_name(context)
        client = self.hook.conn
        status = status_of(client, self.instance_name)
        if status == GONE:
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
            super().execute(context)
        else:
            self.log.info("reusing notebook instance %s (%s) from an earlier try", self.instance_name, status)
            if status in ("Stopped",):
                client.start_notebook_instance(NotebookInstanceName=self.instance_name)
            elif status in ("Stopping", "Deleting"):
                raise RuntimeError(f"notebook instance {self.instance_name} is {status}; retry later")
        wait_for_status(client, self.instance_name, {"InService"}, self.wait_timeout_s, self.poll_seconds)
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
        self.instance_name = self.resolve_name(context)
        client = self.hook.conn
        status = status_of(client, self.instance_name)
        if status == "Pending":  # cannot stop a pending instance: let it settle first
            status = wait_for_status(
                client,
                self.instance_name,
                {"InService", "Failed", GONE},
                self.wait_timeout_s,
                self.poll_seconds,
            )
        if status == "InService":
            self.log.info("stopping notebook instance %s", self.instance_name)
            client.stop_notebook_instance(NotebookInstanceName=self.instance_name)
        elif status != "Stopping":
            self.log.info("notebook instance %s is %s: nothing to stop", self.instance_name, status)
            return
        wait_for_status(
            client, self.instance_name, {"Stopped", "Failed", GONE}, self.wait_timeout_s, self.poll_seconds
        )


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
        self.instance_name = self.resolve_name(context)
        client = self.hook.conn
        status = status_of(client, self.instance_name)
        if status == GONE:
            self.log.info("notebook instance %s is already gone", self.instance_name)
            return
        if status in ("Pending", "Stopping", "Updating"):
            status = wait_for_status(
                client,
                self.instance_name,
                {"InService", "Stopped", "Failed", GONE},
                self.wait_timeout_s,
                self.poll_seconds,
            )
        if status == "InService":
            client.stop_notebook_instance(NotebookInstanceName=self.instance_name)
            wait_for_status(
                client, self.instance_name, {"Stopped", "Failed"}, self.wait_timeout_s, self.poll_seconds
            )
        if status != GONE:
            self.log.info("deleting notebook instance %s", self.instance_name)
            client.delete_notebook_instance(NotebookInstanceName=self.instance_name)
        wait_for_status(client, self.instance_name, {GONE}, self.wait_timeout_s, self.poll_seconds)
