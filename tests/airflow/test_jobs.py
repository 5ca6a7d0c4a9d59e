"""The `sagemaker-job` backend's DAG: each value's job task defers to the triggerer; it serializes."""

from __future__ import annotations

from pathlib import Path

from airflow.serialization.serialized_objects import DagSerialization

from dag_factory.airflow.build import dag_from_spec
from dag_factory.airflow.jobs import SageMakerJobOperator
from dag_factory.airflow.triggers import SageMakerJobTrigger
from tests.job_platform import write_job_platform
from tests.paths import REPO

EXAMPLE = REPO / "project_configs" / "churn-model.yaml"


def test_the_churn_model_builds_one_deferrable_job_task_per_value_and_serializes(tmp_path: Path) -> None:
    dag = dag_from_spec(EXAMPLE, env="preprod", platform=write_job_platform(tmp_path))
    kinds = sorted({t.task_id.split(".")[-1] for t in dag.tasks})
    assert kinds == ["deliver_churn_scores", "report", "run_job"]
    job = dag.get_task("de.run_job")
    assert isinstance(job, SageMakerJobOperator)
    assert (job.deferrable, job.retries, job.pool) == (True, 1, "sagemaker_api")
    # max_parallel 10: the 11th value's job waits for the first's (a lane), its deliveries for the job
    assert sorted(t.task_id for t in job.downstream_list) == ["de.deliver_churn_scores", "se.run_job"]
    back = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert back.get_task("de.run_job").task_type == "SageMakerJobOperator"


def test_the_trigger_round_trips_through_its_serialized_form() -> None:
    trigger = SageMakerJobTrigger("job-e2e-x-t1-0123456789", 5, "aws_default", "eu-west-1")
    path, kwargs = trigger.serialize()
    assert path == "dag_factory.airflow.triggers.SageMakerJobTrigger"
    assert SageMakerJobTrigger(**kwargs).serialize() == (path, kwargs)
