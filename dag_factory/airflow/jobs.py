"""The `sagemaker-job` backend's tasks: per group one SageMaker Training Job (`run_job`) that runs the
group's prepare and notebook steps, then its deliveries. The job task creates the job and defers its wait
to the triggerer (dag_factory.airflow.triggers); its retries know what failed from the job's
FailureReason and exit status, as the SSH and local steps do from theirs (plan.guard.retry_verdict)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any, NoReturn

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from dag_factory.airflow.params import ChecksEnvironment
from dag_factory.airflow.triggers import SageMakerJobTrigger
from dag_factory.compute.sagemaker_jobs import JobOutcome, job_name, stop_job, training_job_request
from dag_factory.plan.guard import Fault, retry_verdict
from dag_factory.plan.model import DagPlan, GroupPlan, JobArgs
from dag_factory.plan.report import BILLABLE_XCOM

JOB_NAME_XCOM = "job_name"
# past the job's own limits (MaxRuntimeInSeconds, MaxWaitTimeInSeconds), SageMaker has stopped it:
# the deferred wait gives it this long to say so before the task itself times out
DEFER_GRACE_S = 30 * 60


class SageMakerJobOperator(ChecksEnvironment, SageMakerTrainingOperator):
    """One try: a new Training Job (its name is the try's), its rendered script put beside the deployed
    code, the wait deferred. A retry first stops what earlier tries' jobs may still run and sets aside
    what they wrote (dag_factory.deliver.tries), as a notebook step's retry does on an instance."""

    template_fields = ("script", "output_prefixes")

    def __init__(self, *, job: JobArgs, env: str, infra_retries: int, **kwargs: Any) -> None:
        super().__init__(config={}, deferrable=True, print_log=False, check_if_job_exists=False, **kwargs)
        self.job = {k: v for k, v in asdict(job).items() if k not in ("script", "output_prefixes")}
        self.script = job.script
        self.output_prefixes = list(job.output_prefixes)
        self.env = env
        self.infra_retries = infra_retries
        self.notebook_retries = job.notebook_retries

    def _args(self) -> JobArgs:
        return JobArgs(**self.job, script=self.script, output_prefixes=self.output_prefixes)

    def _name(self, context: Any, try_number: int) -> str:
        return job_name(self.job["dag_id"], context["run_id"], self.job["group"], try_number, env=self.env)

    def execute(self, context: Any) -> Any:
        ti = context["ti"]
        try_number = int(ti.try_number)
        client = self.hook.conn
        for earlier in range(1, try_number):  # a try whose task died may have left its job running
            if stop_job(client, self._name(context, earlier)):
                self.log.info("stopped the job of try %d, still running", earlier)
        self._set_aside_failed_tries(ti)
        name = self._name(context, try_number)
        script_uri = f"{self.job['script_folder']}/{name}.sh"
        bucket, _, key = script_uri.removeprefix("s3://").partition("/")
        self._s3().put_object(Bucket=bucket, Key=key, Body=self.script.encode("utf-8"))
        self.config = training_job_request(self._args(), name, script_uri, context["run_id"])
        self.log.info("creating SageMaker job %s (%s) for %s", name, self.job["instance_type"],
                      ", ".join(self.job["notebooks"]))  # fmt: skip
        try:
            client.create_training_job(**self.config)
        except Exception as exc:  # quota (ResourceLimitExceeded), throttling after botocore's retries
            self._fail("infrastructure", f"{type(exc).__name__}: {exc}", try_number)
        ti.xcom_push(key=JOB_NAME_XCOM, value=name)
        wait_s = self.job["timeout_s"] + (self.job["max_wait_s"] or 0) + DEFER_GRACE_S
        self.defer(
            trigger=SageMakerJobTrigger(name, self.job["poll_s"], self.aws_conn_id, self.region_name),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=wait_s),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        ti = context["ti"]
        assert event is not None
        outcome = JobOutcome(event["status"], event["secondary"], event["reason"], event["billable_s"])
        if outcome.billable_s is not None:
            ti.xcom_push(key=BILLABLE_XCOM, value=outcome.billable_s)
        self.log.info("job %s: %s (%s), %s billable seconds", event["job_name"], outcome.status,
                      outcome.secondary, outcome.billable_s)  # fmt: skip
        if outcome.status != "Completed":
            fault, detail = outcome.fault()
            self._fail(fault, f"job {event['job_name']}: {detail}", int(ti.try_number))
        return {"job_name": event["job_name"], "billable_seconds": outcome.billable_s}

    def on_kill(self) -> None:
        """Killed while creating (the wait itself is the trigger's, whose on_kill stops the job)."""
        name = self.config.get("TrainingJobName") if isinstance(self.config, dict) else None
        if name:
            stop_job(self.hook.conn, name)

    def _s3(self) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.aws_conn_id).get_conn()

    def _set_aside_failed_tries(self, ti: Any) -> None:
        from dag_factory.deliver.tries import set_aside_failed_tries

        s3 = self._s3()
        for prefix in self.output_prefixes:
            set_aside_failed_tries(prefix, ti.task_id, int(ti.try_number), s3)

    def _fail(self, fault: Fault, detail: str, try_number: int) -> NoReturn:
        retry, verdict = retry_verdict(fault, try_number, self.infra_retries, self.notebook_retries)
        message = f"{', '.join(self.job['notebooks'])} failed ({detail}): {verdict}"
        if retry:
            self.log.warning(message)
            raise AirflowException(message) from None
        self.log.error(message)
        raise AirflowFailException(message) from None


def job_operator(plan: DagPlan, group: GroupPlan, job: JobArgs) -> SageMakerJobOperator:
    return SageMakerJobOperator(
        task_id="run_job",
        job=job,
        env=plan.env,
        infra_retries=plan.retries,
        aws_conn_id=plan.connections["aws"],
        region_name=plan.region,
        pool=plan.api_pool["name"] if plan.api_pool else "default_pool",
        retries=max(plan.retries, job.notebook_retries),
    )
