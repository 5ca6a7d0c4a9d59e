"""SageMaker Training Jobs, as strict as AWS's, whose container really runs on this machine.

moto serves training jobs as records that are Completed at once and runs nothing; it has no
StopTrainingJob. ``StrictTrainingJobs`` answers CreateTrainingJob, DescribeTrainingJob, StopTrainingJob
and ListTrainingJobs itself (moto runs in this process, ``ThreadedMotoServer``: its SageMaker responses
are patched in place, as tests/servers/sagemaker.py does), every other action stays moto's:

- **Input rules** as AWS words them (``ValidationException: N validation error(s) detected: ...``): the job
  name (``[a-zA-Z0-9](-*[a-zA-Z0-9])*``, at most 63, never used before in the account), tags (AWS's rules,
  tests/servers/sagemaker_rules.py), the training instance-type enum (botocore's API model: ml.t3.medium
  is a notebook type, not a training one), MaxRuntimeInSeconds 1-2419200, managed spot's
  MaxWaitTimeInSeconds (required with spot, at least the runtime, refused without it), entrypoint and
  argument strings of at most 256 characters, the role ARN, 1-16 subnets and 1-5 security groups, an
  ECR image.
- **Quotas** per instance type (``quotas = {"ml.m5.large": 2}``): a create beyond that many InProgress or
  Stopping jobs answers ``ResourceLimitExceeded``.
- **Life cycle**: InProgress with secondary statuses Starting -> Downloading -> Training -> Uploading,
  then Completed, Failed (``FailureReason``) or Stopped; ``BillableTimeInSeconds`` is the Training time,
  whole seconds, at least 1. ``fail_capacity(times)``: the next ``times`` jobs end Failed in Starting with
  SageMaker's CapacityError. ``hold(part)``: jobs whose name contains ``part`` stay in Starting until
  ``release(part)``.
- **The container**: ContainerEntrypoint + ContainerArguments run as a process group of their own, in a
  fresh work directory (its HOME) with ``container_env`` (the sshd fixture's fake conda and ``aws`` shim,
  pointed at moto's S3): the job's code and outputs go through moto. Its exit status decides: 0
  Completed; else Failed, ``AlgorithmError: <the container's /opt/ml/output/failure, here
  $SM_FAILURE_FILE, or its last stderr line>, exit code: N``.
- **Stops**: StopTrainingJob (only InProgress) -> Stopping -> Stopped; MaxRuntimeInSeconds reached ->
  Stopped with secondary status MaxRuntimeExceeded. Both send the container SIGTERM, then SIGKILL after
  ``stop_grace_s`` (AWS: 120 s).

``history`` keeps every status change, ``created`` every accepted request, ``rejected`` every refusal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers.sagemaker import login_aws_env
from tests.servers.sagemaker_rules import NAME_PATTERN, tag_problems

ACTIONS = ("CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob", "ListTrainingJobs")
MAX_RUNTIME_S = 28 * 24 * 3600
ROLE = re.compile(r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
ECR_IMAGE = re.compile(r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/.+")
CAPACITY_ERROR = (
    "CapacityError: Unable to provision requested ML compute capacity. Please retry using a different ML "
    "instance type."
)


def training_instance_types() -> list[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateTrainingJob").input_shape.members["ResourceConfig"]
    return list(shape.members["InstanceType"].enum)


@dataclass
class FakeJob:
    name: str
    arn: str
    request: dict[str, Any]
    created: dt.datetime
    status: str = "InProgress"
    secondary: str = "Starting"
    reason: str = ""
    started: dt.datetime | None = None  # Training began
    ended: dt.datetime | None = None
    transitions: list[dict[str, Any]] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    stop_asked: str = ""  # "Stopped" (StopTrainingJob) or "MaxRuntimeExceeded"
    workdir: Path | None = None
    log: str = ""

    @property
    def instance_type(self) -> str:
        return str(self.request["ResourceConfig"]["InstanceType"])

    def describe(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn,
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary,
            "AlgorithmSpecification": self.request["AlgorithmSpecification"],
            "RoleArn": self.request["RoleArn"],
            "OutputDataConfig": self.request["OutputDataConfig"],
            "ResourceConfig": self.request["ResourceConfig"],
            "VpcConfig": self.request.get("VpcConfig"),
            "StoppingCondition": self.request["StoppingCondition"],
            "EnableManagedSpotTraining": bool(self.request.get("EnableManagedSpotTraining")),
            "CreationTime": self.created.timestamp(),
            "LastModifiedTime": time.time(),
            "SecondaryStatusTransitions": self.transitions,
        }
        if self.reason:
            answer["FailureReason"] = self.reason
        if self.started:
            answer["TrainingStartTime"] = self.started.timestamp()
        if self.ended:
            answer["TrainingEndTime"] = self.ended.timestamp()
            if self.started:
                seconds = (self.ended - self.started).total_seconds()
                answer["TrainingTimeInSeconds"] = answer["BillableTimeInSeconds"] = max(1, math.ceil(seconds))
        return {k: v for k, v in answer.items() if v is not None}


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _validation(problems: list[str]) -> _Refused:
    count = f"{len(problems)} validation error{'s' if len(problems) > 1 else ''} detected"
    return _Refused("ValidationException", f"{count}: {'; '.join(problems)}")


def request_problems(request: dict[str, Any], known_names: set[str]) -> list[str]:
    """AWS's input checks of CreateTrainingJob that the product's requests could break, as AWS words them."""
    problems = []
    name = str(request.get("TrainingJobName") or "")
    if len(name) > 63 or not re.fullmatch(NAME_PATTERN, name):
        problems.append(
            f"Value '{name}' at 'trainingJobName' failed to satisfy constraint: Member must satisfy regular "
            f"expression pattern: {NAME_PATTERN} and have length less than or equal to 63"
        )
    algorithm = request.get("AlgorithmSpecification") or {}
    if not ECR_IMAGE.fullmatch(str(algorithm.get("TrainingImage", ""))):
        image = algorithm.get("TrainingImage")
        problems.append(f"Value '{image}' at 'algorithmSpecification.trainingImage' is not an image in ECR")
    for key in ("ContainerEntrypoint", "ContainerArguments"):
        words = algorithm.get(key) or []
        if len(words) > 100 or any(not 1 <= len(w) <= 256 for w in words):
            problems.append(
                f"Value at 'algorithmSpecification.{key[0].lower()}{key[1:]}' failed to satisfy constraint: "
                "Member must have length less than or equal to 100, each member of length 1-256"
            )
    if not ROLE.fullmatch(str(request.get("RoleArn", ""))):
        problems.append(
            f"Value '{request.get('RoleArn')}' at 'roleArn' failed to satisfy constraint: Member must "
            f"satisfy regular expression pattern: {ROLE.pattern}"
        )
    instance_type = (request.get("ResourceConfig") or {}).get("InstanceType")
    if instance_type not in training_instance_types():
        problems.append(
            f"Value '{instance_type}' at 'resourceConfig.instanceType' failed to satisfy constraint: Member "
            "must satisfy enum value set: [see the CreateTrainingJob API reference]"
        )
    stopping = request.get("StoppingCondition") or {}
    runtime = int(stopping.get("MaxRuntimeInSeconds") or 0)
    if not 1 <= runtime <= MAX_RUNTIME_S:
        problems.append(f"Value '{runtime}' at 'stoppingCondition.maxRuntimeInSeconds' failed to satisfy "
                        f"constraint: Member must have value between 1 and {MAX_RUNTIME_S}")  # fmt: skip
    wait = stopping.get("MaxWaitTimeInSeconds")
    if request.get("EnableManagedSpotTraining") and (wait is None or int(wait) < runtime):
        problems.append("Invalid MaxWaitTimeInSeconds. It must be present and be greater than or equal to "
                        "MaxRuntimeInSeconds")  # fmt: skip
    if wait is not None and not request.get("EnableManagedSpotTraining"):
        problems.append("MaxWaitTimeInSeconds is only supported for managed spot training")
    vpc = request.get("VpcConfig")
    if vpc is not None and not (
        1 <= len(vpc.get("Subnets", [])) <= 16 and 1 <= len(vpc.get("SecurityGroupIds", [])) <= 5
    ):
        problems.append(
            "Value at 'vpcConfig' failed to satisfy constraint: 1-16 subnets and 1-5 security groups"
        )
    problems.extend(tag_problems(request.get("Tags") or []))
    if not problems and name in known_names:
        problems.append(f"Training job names must be unique within an AWS account and region, and a training "
                        f"job with this name already exists ({name})")  # fmt: skip
    return problems


@dataclass
class StrictTrainingJobs:
    """The patch (see module doc); ``container_env`` is the job container's environment."""

    container_env: dict[str, str]
    region: str = "eu-west-1"
    account_id: str = "123456789012"
    quotas: dict[str, int] = field(default_factory=dict)
    starting_s: float = 0.5  # Starting and Downloading take this long each (Uploading too)
    stop_grace_s: float = 5.0
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    history: list[tuple[str, str, str, float]] = field(default_factory=list)  # name, status, secondary, at
    created: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (action, message)
    _capacity_failures: int = 0
    _held: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="training-jobs-")))

    # --- for tests -----------------------------------------------------------------------------------
    def fail_capacity(self, times: int) -> None:
        self._capacity_failures += times

    def hold(self, part: str) -> None:
        self._held.add(part)

    def release(self, part: str) -> None:
        self._held.discard(part)

    def statuses(self, name: str) -> list[tuple[str, str]]:
        """(status, secondary status) of job ``name``, in order."""
        return [(status, secondary) for job, status, secondary, _ in self.history if job == name]

    def running(self) -> list[FakeJob]:
        return [job for job in self.jobs.values() if job.status in ("InProgress", "Stopping")]

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not {what} after {timeout}s: {[j.describe() for j in self.jobs.values()]}"
                )
            time.sleep(0.1)

    def stop_all(self) -> None:
        for job in list(self.jobs.values()):
            self._signal(job, signal.SIGKILL)

    # --- the patch -----------------------------------------------------------------------------------
    def install(self, monkeypatch: pytest.MonkeyPatch) -> StrictTrainingJobs:
        from moto.sagemaker.responses import SageMakerResponse

        fake = self
        original = SageMakerResponse.call_action

        def call_action(response: Any) -> Any:
            action = response._get_action()
            if action not in ACTIONS:
                return original(response)
            headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": str(uuid.uuid4())}
            try:
                body = fake.answer(action, json.loads(response.body or "{}"))
            except _Refused as refused:
                fake.rejected.append((action, refused.message))
                return 400, headers, json.dumps({"__type": refused.code, "message": refused.message})
            return 200, headers, json.dumps(body)

        monkeypatch.setattr(SageMakerResponse, "call_action", call_action)
        return self

    def answer(self, action: str, request: dict[str, Any]) -> dict[str, Any]:
        if action == "CreateTrainingJob":
            return self._create(request)
        if action == "ListTrainingJobs":
            return {"TrainingJobSummaries": [
                {"TrainingJobName": j.name, "TrainingJobArn": j.arn, "TrainingJobStatus": j.status,
                 "CreationTime": j.created.timestamp()} for j in self.jobs.values()
            ]}  # fmt: skip
        job = self.jobs.get(str(request.get("TrainingJobName")))
        if job is None:
            raise _Refused(
                "ValidationException", f"Requested resource not found: {request.get('TrainingJobName')}"
            )
        if action == "DescribeTrainingJob":
            return job.describe()
        if job.status != "InProgress":  # StopTrainingJob
            raise _Refused("ValidationException", f"The request was rejected because the training job is in "
                                                  f"status {job.status}.")  # fmt: skip
        self._stop(job, "Stopped")
        return {}

    def _create(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            problems = request_problems(request, set(self.jobs))
            if problems:
                raise _validation(problems)
            instance_type = request["ResourceConfig"]["InstanceType"]
            quota = self.quotas.get(instance_type)
            in_use = sum(1 for j in self.running() if j.instance_type == instance_type)
            if quota is not None and in_use + 1 > quota:
                raise _Refused(
                    "ResourceLimitExceeded",
                    f"The account-level service limit '{instance_type} for training job usage' is {quota} "
                    f"Instances, with current utilization of {in_use} Instances and a request delta of 1 "
                    "Instances. Please use AWS Service Quotas to request an increase for this quota.",
                )
            name = request["TrainingJobName"]
            arn = f"arn:aws:sagemaker:{self.region}:{self.account_id}:training-job/{name.lower()}"
            job = FakeJob(name, arn, request, dt.datetime.now(dt.UTC))
            self.jobs[name] = job
            self.created.append(request)
            self._move(job, "InProgress", "Starting")
        threading.Thread(target=self._run, args=(job,), daemon=True, name=f"job-{name}").start()
        return {"TrainingJobArn": arn}

    # --- the job's life ------------------------------------------------------------------------------
    def _move(self, job: FakeJob, status: str, secondary: str, reason: str = "") -> None:
        now = dt.datetime.now(dt.UTC)
        if job.transitions:
            job.transitions[-1]["EndTime"] = now.timestamp()
        job.transitions.append(
            {"Status": secondary, "StartTime": now.timestamp(), "StatusMessage": secondary}
        )
        job.status, job.secondary, job.reason = status, secondary, reason or job.reason
        self.history.append((job.name, status, secondary, time.monotonic()))

    def _run(self, job: FakeJob) -> None:
        try:
            self._run_container(job)
        except Exception as exc:  # the fake's own fault: say so, as SageMaker would say an internal error
            self._move(job, "Failed", "Failed", f"InternalServerError: the fake failed: {exc!r}")
        finally:
            if job.workdir is not None:
                shutil.rmtree(job.workdir, ignore_errors=True)

    def _run_container(self, job: FakeJob) -> None:
        while any(part in job.name for part in self._held) and not job.stop_asked:
            time.sleep(0.1)
        time.sleep(self.starting_s)
        with self._lock:
            if self._capacity_failures > 0:
                self._capacity_failures -= 1
                self._move(job, "Failed", "Failed", CAPACITY_ERROR)
                return
        if job.stop_asked:
            self._move(job, "Stopped", "Stopped")
            return
        self._move(job, "InProgress", "Downloading")
        time.sleep(self.starting_s)
        algorithm = job.request["AlgorithmSpecification"]
        argv = [*algorithm["ContainerEntrypoint"], *algorithm.get("ContainerArguments", [])]
        job.workdir = self._root / job.name
        job.workdir.mkdir(parents=True)
        failure_file = job.workdir / "failure"
        env = {**self.container_env, "HOME": str(job.workdir), "SM_FAILURE_FILE": str(failure_file),
               "TRAINING_JOB_NAME": job.name}  # fmt: skip
        log_path = job.workdir / "container.log"
        job.started = dt.datetime.now(dt.UTC)
        self._move(job, "InProgress", "Training")
        runtime = int(job.request["StoppingCondition"]["MaxRuntimeInSeconds"])
        with log_path.open("wb") as log:
            job.process = subprocess.Popen(
                argv, cwd=job.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            try:
                status = job.process.wait(timeout=runtime)
            except subprocess.TimeoutExpired:
                self._stop(job, "MaxRuntimeExceeded")
                status = job.process.wait()
        job.ended = dt.datetime.now(dt.UTC)
        job.log = log_path.read_text(errors="replace")
        if job.stop_asked:
            self._move(job, "Stopped", job.stop_asked)
            return
        self._move(job, "InProgress", "Uploading")
        time.sleep(self.starting_s / 2)
        if status == 0:
            self._move(job, "Completed", "Completed")
            return
        said = failure_file.read_text().strip() if failure_file.exists() else ""
        last = next((line for line in reversed(job.log.splitlines()) if line.strip()), "")
        self._move(job, "Failed", "Failed", f"AlgorithmError: {said or last[:500]}, exit code: {status}")

    def _stop(self, job: FakeJob, why: str) -> None:
        job.stop_asked = why
        if job.status == "InProgress":
            self._move(job, "Stopping", "Stopping")
        self._signal(job, signal.SIGTERM)

        def kill_later() -> None:
            deadline = time.monotonic() + self.stop_grace_s
            while job.process is not None and job.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            self._signal(job, signal.SIGKILL)

        threading.Thread(target=kill_later, daemon=True).start()

    @staticmethod
    def _signal(job: FakeJob, sig: int) -> None:
        if job.process is not None and job.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.process.pid, sig)


def container_env(
    sshd_login_env: dict[str, str], endpoint_url: str, region: str = "eu-west-1"
) -> dict[str, str]:
    """The container's environment: the sshd fixture's login environment (its fake conda and ``aws`` shim,
    tests/servers/sshd.py), pointed at moto."""
    return {**sshd_login_env, **login_aws_env(endpoint_url, region)}


@pytest.fixture
def training_jobs(
    aws_env: Any, sshd_server: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StrictTrainingJobs]:
    """Clean moto with ``StrictTrainingJobs``; every job still running is killed after the test."""
    fake = StrictTrainingJobs(container_env(sshd_server.base_login_env, aws_env.endpoint_url)).install(
        monkeypatch
    )
    try:
        yield fake
    finally:
        fake.stop_all()
        shutil.rmtree(fake._root, ignore_errors=True)
