"""Triggers: the waits of the `sagemaker-job` backend, in Airflow's triggerer (no worker slot, no pool
slot, no reschedule poke: a thousand running jobs cost one triggerer's event loop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from dag_factory.compute.sagemaker_jobs import TERMINAL, JobOutcome, stop_job


class SageMakerJobTrigger(BaseTrigger):
    """Polls DescribeTrainingJob until the job is over, then fires one event: the job's outcome
    (``JobOutcome.as_event``). The task being killed by a person (marked failed or success, cleared)
    stops the job (``on_kill``); a restarted triggerer resumes the wait (nothing is stopped then)."""

    def __init__(
        self, job_name: str, poll_s: int, aws_conn_id: str | None, region_name: str | None = None
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.job_name = job_name
        self.poll_s = poll_s
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"job_name": self.job_name, "poll_s": self.poll_s, "aws_conn_id": self.aws_conn_id,
             "region_name": self.region_name},
        )  # fmt: skip

    def _client(self) -> Any:
        from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

        from dag_factory.compute.aws import retry_config

        hook = SageMakerHook(  # type: ignore[no-untyped-call]
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, config=retry_config()
        )
        return hook.conn

    async def run(self) -> AsyncIterator[TriggerEvent]:
        client = await asyncio.to_thread(self._client)
        while True:
            description = await asyncio.to_thread(client.describe_training_job, TrainingJobName=self.job_name)
            if description["TrainingJobStatus"] in TERMINAL:
                yield TriggerEvent({"job_name": self.job_name, **JobOutcome.of(description).as_event()})  # type: ignore[no-untyped-call]
                return
            self.log.info("job %s: %s (%s)", self.job_name, description["TrainingJobStatus"],
                          description.get("SecondaryStatus"))  # fmt: skip
            await asyncio.sleep(self.poll_s)

    async def on_kill(self) -> None:
        # one thread makes the client and stops the job: the triggerer may cancel on_kill again while it
        # waits (seen with Airflow 3.3), which would leave a second step unstarted; a thread that started
        # finishes whatever happens to the await
        await asyncio.shield(asyncio.to_thread(self._stop))

    def _stop(self) -> None:
        if stop_job(self._client(), self.job_name):
            self.log.info("stopped job %s: its task was killed", self.job_name)

