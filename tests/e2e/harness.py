"""End-to-end harness: the example job through real Airflow on the SageMaker backend.

SageMaker, EC2 and S3 are moto (tests/servers/sagemaker.py gives each notebook instance an ENI whose
private IP is a loopback address where a real sshd listens); the notebooks run over SSH with papermill
in the sshd's fake conda env and write to moto's S3; delivery loads into a real PostgreSQL.

One Airflow home and one api-server serve the whole e2e session (``airflow_server``); each test writes
its own platform file, spec copy and DAG file under its tmp dir (``E2E.job``) and runs it with
``E2E.run``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dag_factory.airflow.dag_files import dag_file_source, write_dag_file
from dag_factory.compute.code_versions import S3CodeStore, file_md5, publish
from dag_factory.local.airflow_home import ApiServer
from dag_factory.local.execute import ProgressCallback, RunResult, run_dag
from dag_factory.local.run_records import task_error
from tests.paths import REPO
from tests.servers.airflow import ENVIRONMENT, POOL, Deployment
from tests.servers.postgres import PostgresServer
from tests.servers.sagemaker import NOTEBOOK_INSTANCE_TYPE, ROLE_ARN, SageMakerEnv

DEMO_SPEC = REPO / "project_configs" / "churn-demo.yaml"
DEMO_PROJECT = REPO / "examples" / "churn-demo"
ENV_NAME = ENVIRONMENT  # the platform file's environment: the real-scheduler workers' one too
POSTGRES_CONN_ID = "e2e_postgres"
DATE = dt.date(2026, 1, 5)
RUN_TIMEOUT_S = 600.0
# every e2e job retries: infrastructure faults are retried, notebook errors are not (docs/operations.md)
RETRIES = 1
RETRY_DELAY = "5s"
# the parameters cell of the notebooks tests write into a copy of the demo project
DEMO_PARAMETERS = "country = 'de'\noutput_prefix = '/tmp'"
DEPLOYED_POLL_INTERVAL = "10s"  # runs on the real scheduler (run_deployed)
JOB_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/notebook-runner:test"
JOB_INSTANCE_TYPE = "ml.m5.large"  # a training type (ml.t3.medium, the notebooks', is none)


@dataclass(frozen=True)
class Job:
    """One spec copy + platform file + DAG file under a test's tmp dir."""

    spec: Path
    platform: Path
    dag_file: Path
    dag_id: str
    values: tuple[str, ...]
    output_bucket: str
    code_bucket: str
    workdir: str  # the platform's ssh.workdir ("{group}" in it): where the steps run on the "instance"

    def step_processes(self) -> dict[int, str]:
        """Processes of this job's steps on the sshd host, by the guard's marker (pid -> marker)."""
        head = self.workdir.split("{group}")[0]
        return step_processes(head)


@dataclass
class E2E:
    """The servers of one test and helpers to write, deploy and run a job on them."""

    tmp_path: Path
    sm: SageMakerEnv
    pg: PostgresServer
    server: ApiServer

    # --- writing a job -----------------------------------------------------------------------------
    def platform_settings(self, **overrides: Any) -> dict[str, Any]:
        sshd = self.sm.sshd
        env: dict[str, Any] = {
            "backend": "sagemaker",
            "account_id": "123456789012",
            "region": "eu-west-1",
            "role_arn": ROLE_ARN,
            "subnet_id": self.sm.subnet_id,
            "security_group_ids": self.sm.security_group_ids,
            "buckets": dict(self.sm.buckets),
            "connections": {"aws": "aws_default", "ssh": "ssh_default", "postgres": POSTGRES_CONN_ID},
            "allowed_instance_types": [NOTEBOOK_INSTANCE_TYPE],
            "api_pool": {"name": POOL, "slots": 4},
            # the harness's instances change state in seconds; a shorter poll races Airflow's executor
            # events (apache/airflow#71172)
            "poll_interval": "5s",
            "ssh": {
                "conda_activate": str(sshd.activate_script),
                # one sshd plays every instance: a folder per group keeps parallel values apart
                "workdir": f"{sshd.home}/SageMaker/job-{uuid.uuid4().hex[:8]}-{{group}}",
            },
        }
        env.update(overrides)
        return {"version": 1, "environments": {ENV_NAME: env}}

    def job(
        self,
        values: list[str],
        *,
        notebook_params: dict[str, Any] | None = None,
        notebooks: list[dict[str, Any]] | None = None,
        project_dir: Path = DEMO_PROJECT,
        platform: dict[str, Any] | None = None,
        project: str | None = None,
        **spec_fields: Any,
    ) -> Job:
        """Write the demo spec (or a variant), a platform file and the DAG file; deploy the project."""
        spec = yaml.safe_load(DEMO_SPEC.read_text())
        spec["project_dir"] = str(project_dir)
        spec["project"] = project or spec["project"]
        spec["compute"]["instance_type"] = NOTEBOOK_INSTANCE_TYPE
        spec["retries"], spec["retry_delay"] = RETRIES, RETRY_DELAY
        spec.update(spec_fields)
        if notebook_params:
            spec["notebooks"][1].setdefault("parameters", {}).update(notebook_params)
        if notebooks is not None:
            spec["notebooks"] = notebooks
        settings = platform or self.platform_settings()
        spec_path, platform_path = self.tmp_path / "churn-demo.yaml", self.tmp_path / "platform.yaml"
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        platform_path.write_text(yaml.safe_dump(settings, sort_keys=False))
        dags = self.tmp_path / "dags"
        dag_file = write_dag_file(spec_path, dags, env=ENV_NAME, platform=platform_path, only=values)
        buckets = settings["environments"][ENV_NAME]["buckets"]
        self.deploy(project_dir, buckets["code"], spec["project"])
        environment = settings["environments"][ENV_NAME]
        # a job backend's steps run in its own workdir (tests/servers/sagemaker_jobs.py runs the container)
        workdir = environment["ssh"]["workdir"] if "ssh" in environment else environment["workdir"]
        return Job(spec_path, platform_path, dag_file, spec["project"], tuple(values), buckets["output"],
                   buckets["code"], workdir)  # fmt: skip

    def deploy(self, project_dir: Path, bucket: str, project: str) -> None:
        """What CI's deploy step does: the project folder becomes the current code version in
        s3://<code bucket>/<project>/ (dag_factory.compute.code_versions, as `dag-factory deploy`)."""
        files = {
            path.relative_to(project_dir).as_posix(): path
            for path in sorted(project_dir.rglob("*"))
            if path.is_file() and ".ipynb_checkpoints" not in path.parts and "__pycache__" not in path.parts
        }
        store = S3CodeStore(self.sm.moto.client("s3"), bucket, project)
        publish(store, files, {key: file_md5(path) for key, path in files.items()}, dt.datetime.now(dt.UTC))

    def job_backend_settings(self, **overrides: Any) -> dict[str, Any]:
        """A platform file whose environment runs each group as a SageMaker job (backend sagemaker-job):
        the fake's container (tests/servers/sagemaker_jobs.py) runs on this machine with the sshd
        fixture's fake conda, so the image's activate script is that one."""
        env: dict[str, Any] = {
            "backend": "sagemaker-job",
            "account_id": "123456789012",
            "region": "eu-west-1",
            "role_arn": ROLE_ARN,
            "image_uri": JOB_IMAGE,
            "subnet_ids": [self.sm.subnet_id],
            "security_group_ids": self.sm.security_group_ids,
            "buckets": dict(self.sm.buckets),
            "connections": {"aws": "aws_default", "postgres": POSTGRES_CONN_ID},
            "allowed_instance_types": [JOB_INSTANCE_TYPE],
            "instance_prices": {JOB_INSTANCE_TYPE: 0.115},
            "api_pool": {"name": POOL, "slots": 4},
            "poll_interval": "2s",  # the triggerer's: one event loop, however many jobs wait
            "conda_activate": str(self.sm.sshd.activate_script),
            "workdir": str(self.tmp_path / f"jobs-{uuid.uuid4().hex[:8]}"),
        }
        env.update(overrides)
        return {"version": 1, "environments": {ENV_NAME: env}}

    def job_backend_job(self, values: list[str], **spec_fields: Any) -> Job:
        """The demo job on the job backend: a training instance type, else the spec as it is."""
        compute = {**yaml.safe_load(DEMO_SPEC.read_text())["compute"], "instance_type": JOB_INSTANCE_TYPE}
        platform = spec_fields.pop("platform", None) or self.job_backend_settings()
        # manual only: a scheduled DAG's first deploy to the real scheduler also starts a scheduled run
        return self.job(values, platform=platform, **{"compute": compute, "schedule": None, **spec_fields})

    # --- running it --------------------------------------------------------------------------------
    def run_env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            **self.server.env,
            f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}": self.pg.uri,
            "DAG_FACTORY_ENV": ENV_NAME,  # the workers' environment, as the DAG files pin it
            **extra,
        }

    def run(
        self, job: Job, date: dt.date = DATE, on_progress: ProgressCallback | None = None, **extra_env: str
    ) -> RunResult:
        started = time.monotonic()
        when = dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC)
        result = run_dag(
            job.dag_file,
            job.dag_id,
            logical_date=when,
            env=self.run_env(**extra_env),
            timeout=RUN_TIMEOUT_S,
            on_progress=on_progress,
        )
        print(f"\n{job.dag_id} {job.values}: {result.state} in {time.monotonic() - started:.1f}s")
        if os.environ.get("E2E_TIMINGS"):
            first = min((ti.start for ti in result.task_instances if ti.start), default=None)
            for ti in sorted(
                result.task_instances,
                key=lambda t: (t.start or dt.datetime.max.replace(tzinfo=dt.UTC), t.task_id),
            ):
                offset = (ti.start - first).total_seconds() if ti.start and first else float("nan")
                print(f"  {ti.task_id:32} {ti.state or '-':16} start +{offset:5.1f}s took {ti.duration}")
        return result

    def run_deployed(
        self,
        deployment: Deployment,
        job: Job,
        date: dt.date = DATE,
        on_progress: ProgressCallback | None = None,
    ) -> RunResult:
        """Run ``job`` on the real scheduler (tests/servers/airflow.py), connections pointed at this test's
        servers through the REST API."""
        self.deploy_on(deployment, job)
        when = dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC)
        run_id = deployment.trigger(job.dag_id, when)
        result = deployment.wait(job.dag_id, run_id, timeout=RUN_TIMEOUT_S, on_progress=on_progress)
        print(f"\n{job.dag_id} {job.values} (scheduler): {result.state}")
        return result

    def deploy_on(self, deployment: Deployment, job: Job) -> None:
        """Put ``job``'s DAG file in the real scheduler's dags folder, its connections pointed at this
        test's servers (through the REST API); it is then triggered as a person would."""
        sshd = self.sm.sshd
        deployment.set_connection(
            "aws_default",
            "aws",
            login="testing",
            password="testing",
            extra={"endpoint_url": self.sm.endpoint_url, "region_name": "eu-west-1"},
        )
        deployment.set_connection(
            "ssh_default",
            "ssh",
            host=sshd.host,
            login=sshd.user,
            port=sshd.port,
            extra=sshd.airflow_conn_extra(),
        )
        pg = self.pg
        deployment.set_connection(
            POSTGRES_CONN_ID, "postgres", host=pg.host, port=pg.port, login=pg.user, password=pg.password,
            schema=pg.dbname,
        )  # fmt: skip
        # the real scheduler's executor events lag behind a reschedule when the suite runs in parallel
        # (6 s measured; a later event fails the poke: apache/airflow#71172): keep the poll above it,
        # as docs/deploy.md says
        platform = yaml.safe_load(job.platform.read_text())
        if platform["environments"][ENV_NAME]["backend"] == "sagemaker":  # a job's wait is a trigger's
            platform["environments"][ENV_NAME]["poll_interval"] = DEPLOYED_POLL_INTERVAL
        job.platform.write_text(yaml.safe_dump(platform, sort_keys=False))
        source = dag_file_source(
            job.spec, deployment.dags, env=ENV_NAME, platform=job.platform, only=job.values
        )
        deployment.deploy(job.dag_id.replace("-", "_"), source)

    # --- reading state -----------------------------------------------------------------------------
    def instances(self) -> list[dict[str, Any]]:
        answer = self.sm.moto.client("sagemaker").list_notebook_instances()
        return list(answer["NotebookInstances"])

    def executed_notebook(self, job: Job, run_id: str, value: str, notebook: str) -> dict[str, Any]:
        key = f"{job.dag_id}/{run_id}/{value}/{notebook}"
        body = self.sm.moto.client("s3").get_object(Bucket=job.output_bucket, Key=key)["Body"].read()
        loaded: dict[str, Any] = json.loads(body)
        return loaded

    def rows(self, table: str, date: dt.date = DATE) -> dict[str, int]:
        """Row count per country for one logical date ({} when the table does not exist)."""
        with self.pg.connect() as conn:
            exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]
            if exists is None:
                return {}
            found = conn.execute(
                f"SELECT country, count(*) FROM {table} WHERE logical_date = %s GROUP BY 1 ORDER BY 1",
                (date,),
            ).fetchall()
        return {str(country): int(n) for country, n in found}


class Watch:
    """Call ``check()`` every ``interval`` seconds in a thread while a run goes on, until it returns True.

    A run's ``on_progress`` is called only when task states change; what happens inside a running task
    (a notebook's processes appearing on the instance) needs polling. An exception in ``check`` is
    raised again when the block ends.
    """

    def __init__(self, check: Callable[[], bool], interval: float = 0.5) -> None:
        self.check, self.interval = check, interval
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.done.is_set():
            try:
                if self.check():
                    return
            except BaseException as exc:  # re-raised in __exit__
                self.error = exc
                return
            self.done.wait(self.interval)

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=30)
        if self.error is not None:
            raise self.error


def step_processes(marker_head: str) -> dict[int, str]:
    """Live processes whose DAG_FACTORY_STEP (dag_factory.plan.guard) starts with ``marker_head``."""
    found = {}
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = environ.read_bytes().split(b"\0")
        except OSError:
            continue
        for variable in variables:
            if variable.startswith(b"DAG_FACTORY_STEP=" + marker_head.encode()):
                found[int(environ.parent.name)] = variable.decode(errors="replace").split("=", 1)[1]
    return found


def wait_for_no_step_processes(job: Job, timeout: float = 30) -> dict[int, str]:
    """What is still running of ``job``'s steps after ``timeout`` seconds (empty when all are gone)."""
    deadline = time.monotonic() + timeout
    while (left := job.step_processes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def attempt_error(result: RunResult, task_id: str, try_number: int) -> str:
    """The error one attempt of a task logged (``result.ti(...).error`` is the last attempt's)."""
    ti = result.ti(task_id)
    assert ti.log_path is not None
    return task_error(ti.log_path.with_name(f"attempt={try_number}.log"))


def state_mismatches(result: RunResult) -> set[tuple[str, int]]:
    """(task_id, try_number) of each try Airflow itself ended because the executor's success for a
    reschedule-mode sensor's poke came after its next poke was scheduled (apache/airflow#71172: logged as
    "state mismatch"; more likely the more loaded the machine). Such a retry is Airflow's, not ours."""
    db = result.log_path.parents[2] / "airflow.db"  # the run's log is <home>/logs/runs/<run>.log
    sql = "SELECT task_id, try_number FROM log WHERE dag_id = ? AND run_id = ? AND event = 'state mismatch'"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute(sql, (result.dag_id, result.run_id)).fetchall()
    return {(str(task_id), int(try_number)) for task_id, try_number in rows}


def tries_told(result: RunResult) -> str:
    """Each task that failed or was retried: its tries and what each logged (for assertion messages, so
    a failure in CI says why without the logs)."""
    mismatched = state_mismatches(result)
    lines = [f"run {result.run_id}: {result.state} {result.error}".strip()]
    for ti in result.task_instances:
        if ti.state == "success" and ti.try_number <= 1:
            continue
        lines.append(f"{ti.task_id}: {ti.state} after {ti.try_number} tries")
        for n in range(1, ti.try_number + 1):
            airflows = " (Airflow's state mismatch)" if (ti.task_id, n) in mismatched else ""
            lines.append(f"  try {n}{airflows}: {attempt_error(result, ti.task_id, n)[:300]}")
    return "\n".join(lines)


def injected_source(notebook: dict[str, Any]) -> str:
    cells = notebook["cells"]
    injected = [c for c in cells if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1, "no injected-parameters cell"
    source = injected[0]["source"]
    return "".join(source) if isinstance(source, list) else str(source)


def notebook_errors(notebook: dict[str, Any]) -> list[str]:
    return [
        f"{o.get('ename')}: {o.get('evalue')}"
        for c in notebook["cells"]
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]


def states(result: RunResult, value: str) -> dict[str, str | None]:
    return {
        ti.task_id.split(".", 1)[1]: ti.state
        for ti in result.task_instances
        if ti.task_id.startswith(value + ".")
    }


def copy_project(target: Path) -> Path:
    shutil.copytree(DEMO_PROJECT, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return target
