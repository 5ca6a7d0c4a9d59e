"""One test's (or benchmark's) view of the distributed cluster: the DAG bundle it writes, the runs it
triggers, the state it reads.

The bundle is laid out like a repository an operator deploys as a DAG bundle: ``project_configs/``
(the platform file and the specs), ``projects/<project>/`` (notebooks, requirements) and ``dags/`` written
by ``dag-factory dags``. Connections and the SageMaker API pool are created through the REST API
(``configure``), runs with ``airflow dags trigger``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dag_factory.local.airflow_home import ApiServer
from tests.e2e.harness import DEMO_PROJECT, DEMO_SPEC, E2E
from tests.notebooks import notebook_json
from tests.servers.airflow_cluster import AirflowCluster
from tests.servers.moto import MotoServer
from tests.servers.postgres import PostgresServer
from tests.servers.sagemaker import NOTEBOOK_INSTANCE_TYPE, SageMakerEnv
from tests.servers.sshd import SshdServer

CLUSTER_ENV = "cluster"
AWS_CONN, SSH_CONN, POSTGRES_CONN = "aws_default", "sagemaker_ssh", "warehouse_postgres"
POOL, POOL_SLOTS = "sagemaker_api", 4
DATE = dt.date(2026, 1, 5)
TICK_NOTEBOOKS = ("tick.ipynb", "tock.ipynb")
DAG_FACTORY = str(Path(sys.executable).with_name("dag-factory"))


def cluster_connections(moto: MotoServer, sshd: SshdServer, warehouse: PostgresServer) -> dict[str, Any]:
    """The connections docs/deploy.md asks an operator to create (here pointed at loopback servers)."""
    return {
        AWS_CONN: json.loads(moto.airflow_connection()),
        SSH_CONN: json.loads(sshd.airflow_conn_json()),
        POSTGRES_CONN: {
            "conn_type": "postgres", "host": warehouse.host, "port": warehouse.port,
            "login": warehouse.user, "password": warehouse.password, "schema": warehouse.dbname,
        },
    }  # fmt: skip


def configure(cluster: AirflowCluster, moto: MotoServer, sshd: SshdServer, warehouse: PostgresServer) -> None:
    """What an operator does once per deployment: the connections and the SageMaker API pool."""
    for conn_id, conn in cluster_connections(moto, sshd, warehouse).items():
        cluster.add_connection(conn_id, conn)
    cluster.set_pool(POOL, POOL_SLOTS, "SageMaker API calls (docs/deploy.md)")


def tick_notebook() -> str:
    """A trivial notebook: sleeps ``seconds`` (once per run and value when ``sleep_once``), writes one
    metrics row to the output prefix with boto3."""
    return notebook_json(
        "import json, os, time\nimport boto3\n"
        "marker = os.path.expanduser(f'~/.tick-{run_id}-{country}'.replace(':', '_'))\n"
        "if not (sleep_once and os.path.exists(marker)):\n"
        "    open(marker, 'w').close()\n"
        "    time.sleep(float(seconds))\n"
        "bucket, _, key = output_prefix.removeprefix('s3://').partition('/')\n"
        "row = [{'country': country, 'n_rows': 1}]\n"
        "s3 = boto3.client('s3')\n"
        "s3.put_object(Bucket=bucket, Key=f'{key}/metrics/metrics.json', Body=json.dumps(row))",
        parameters=(
            'env = ""\naws_account_id = ""\nlogical_date = ""\nrun_id = ""\ncountry = "de"\n'
            'output_prefix = ""\nseconds = 0\nsleep_once = False'
        ),
    )


def write_tick_project(target: Path) -> Path:
    """A project of two trivial notebooks (``tick``, ``tock``: the same cell) and no requirements."""
    (target / "notebooks").mkdir(parents=True, exist_ok=True)
    for name in TICK_NOTEBOOKS:
        (target / "notebooks" / name).write_text(tick_notebook())
    (target / "requirements.txt").write_text("")
    return target


@dataclass(frozen=True)
class Job:
    dag_id: str
    values: tuple[str, ...]
    spec: Path


@dataclass(frozen=True)
class TaskTry:
    task_id: str
    try_number: int
    state: str | None
    hostname: str | None


@dataclass
class Deployment:
    """One test's view of the cluster: writes the DAG bundle, deploys projects, runs and reads state."""

    cluster: AirflowCluster
    sm: SageMakerEnv
    warehouse: PostgresServer
    tmp_path: Path
    # the warehouse schema this deployment's tick jobs deliver into, new for each: rows read back are
    # this test's, whatever ran before it on the same cluster
    schema: str = field(default_factory=lambda: f"t_{uuid.uuid4().hex[:12]}")

    @property
    def tick_table(self) -> str:
        """The table ``tick_spec``'s delivery loads (in this deployment's own schema)."""
        return f"{self.schema}.tick_metrics"

    @property
    def bundle(self) -> Path:
        return self.cluster.source_bundle

    @property
    def e2e(self) -> E2E:  # the e2e helpers: platform settings, deploy to S3, instances, rows
        api = self.cluster.api
        server = ApiServer(api.url, api.pid, api.log_path, api.env, 0)
        return E2E(self.tmp_path, self.sm, self.warehouse, server)

    def platform(self) -> dict[str, Any]:
        settings = self.e2e.platform_settings(
            connections={"aws": AWS_CONN, "ssh": SSH_CONN, "postgres": POSTGRES_CONN},
            api_pool={"name": POOL, "slots": POOL_SLOTS},
        )
        sagemaker = settings["environments"].pop("e2e")
        local = {
            "backend": "local", "root": str(self.tmp_path / "local-backend"), "warehouse": "warehouse.duckdb",
            "buckets": {"code": "code", "data": "data", "intermediate": "intermediate", "output": "runs"},
        }  # fmt: skip
        return {"version": 1, "environments": {"local": local, CLUSTER_ENV: sagemaker}}

    def spec(self, project: str, values: list[str], **fields: Any) -> dict[str, Any]:
        spec = yaml.safe_load(DEMO_SPEC.read_text())
        spec.update(project=project, project_dir=f"../projects/{project}", schedule=None, **fields)
        spec["compute"]["instance_type"] = NOTEBOOK_INSTANCE_TYPE
        spec["compute"]["max_parallel"] = max(len(values), 1)
        spec["fan_out"]["values"] = values
        return spec

    def tick_spec(self, project: str, values: list[str], params: dict[str, Any] | None = None,
                  **fields: Any) -> dict[str, Any]:  # fmt: skip
        """The demo spec with the tick notebook: one notebook, one delivery into ``tick_table`` (7 tasks
        per value)."""
        spec = self.spec(project, values, **fields)
        spec["fan_out"].pop("parameters", None)
        spec["parameters"] = params or {}
        spec["notebooks"] = [{"path": "notebooks/tick.ipynb", "timeout": "10m"}]
        spec["deliver"] = [{"to": "postgres", "table": self.tick_table, "files": "metrics/*.json"}]
        return spec

    def deploy(self, specs: list[dict[str, Any]], extra_files: dict[str, str] | None = None) -> list[Job]:
        """Write the bundle (specs, platform file, projects, ``dag-factory dags``), sync the projects to
        the code bucket, publish the bundle to every component and wait until the DAGs are parsed."""
        shutil.rmtree(self.bundle, ignore_errors=True)
        configs = self.bundle / "project_configs"
        configs.mkdir(parents=True)
        (configs / "platform.yaml").write_text(yaml.safe_dump(self.platform(), sort_keys=False))
        jobs = []
        for spec in specs:
            project = self.bundle / "projects" / spec["project"]
            if spec["notebooks"][0]["path"] == f"notebooks/{TICK_NOTEBOOKS[0]}":
                write_tick_project(project)
            else:
                shutil.copytree(DEMO_PROJECT, project, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
            path = configs / f"{spec['project']}.yaml"
            path.write_text(yaml.safe_dump(spec, sort_keys=False))
            self.e2e.deploy(project, self.sm.buckets["code"], spec["project"])
            jobs.append(Job(spec["project"], tuple(spec["fan_out"]["values"]), path))
        for name, text in (extra_files or {}).items():
            (self.bundle / name).write_text(text)
        subprocess.run(
            [DAG_FACTORY, "dags", "project_configs", "--output", "dags"],
            cwd=self.bundle, check=True, capture_output=True, text=True,
        )  # fmt: skip
        self.cluster.publish()
        for job in jobs:
            self.cluster.wait_parsed(job.dag_id)
        return jobs

    def run(self, job: Job, *, date: dt.date = DATE, wait: bool = True, timeout: float = 600) -> str:
        run_id = f"manual__{job.dag_id}-{uuid.uuid4().hex[:8]}"
        self.cluster.trigger(job.dag_id, date, run_id)
        if wait:
            self.cluster.wait_run(job.dag_id, run_id, timeout=timeout)
            print(f"\n{job.dag_id} {run_id}\n{self.timeline(job, run_id)}")
        return run_id

    # --- reading state -----------------------------------------------------------------------------
    def tries(self, job: Job, run_id: str) -> list[TaskTry]:
        """Every try of every task: earlier tries from task_instance_history, the last from task_instance.

        Airflow 3.3 archives a try when it goes up for retry, so until the retry is queued the try is in
        both tables (archived as failed, live as up_for_retry): the live row sorts last, so a task's
        last entry is always its current state."""
        sql = (
            "SELECT task_id, try_number, state, hostname, 0 AS live FROM task_instance_history "
            "WHERE dag_id = %s AND run_id = %s UNION ALL "
            "SELECT task_id, try_number, state, hostname, 1 AS live FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s ORDER BY 1, 2, 5"
        )
        rows = self.cluster.query(sql, (job.dag_id, run_id, job.dag_id, run_id))
        return [TaskTry(*row[:4]) for row in rows]

    def state_mismatches(self, job: Job, run_id: str) -> set[tuple[str, int]]:
        """(task_id, try_number) of each try the scheduler ended as "killed externally" because the
        executor's success came after the task instance had moved on (the audit log's "state mismatch")."""
        rows = self.cluster.query(
            "SELECT task_id, try_number FROM log "
            "WHERE dag_id = %s AND run_id = %s AND event = 'state mismatch'",
            (job.dag_id, run_id),
        )
        return {(task_id, try_number) for task_id, try_number in rows}

    def states(self, job: Job, run_id: str) -> dict[str, str | None]:
        rows = self.cluster.query(
            "SELECT task_id, state FROM task_instance WHERE dag_id = %s AND run_id = %s", (job.dag_id, run_id)
        )
        return {task_id: state for task_id, state in rows}

    def hosts_by_group(self, job: Job, run_id: str) -> dict[str, set[str]]:
        hosts: dict[str, set[str]] = {}
        for t in self.tries(job, run_id):
            group, dot, _ = t.task_id.partition(".")
            if t.hostname and dot:  # the run's own tasks (report) belong to no group
                hosts.setdefault(group, set()).add(t.hostname)
        return hosts

    def timeline(self, job: Job, run_id: str) -> str:
        """Each try's worker, queue wait and run time, relative to the run's start (printed by tests)."""
        rows = self.cluster.query(
            "SELECT task_id, try_number, hostname, queued_dttm, start_date, end_date, state "
            "FROM task_instance WHERE dag_id = %s AND run_id = %s ORDER BY start_date NULLS LAST",
            (job.dag_id, run_id),
        )  # fmt: skip
        starts = [r[3] or r[4] for r in rows if r[3] or r[4]]
        if not starts:
            return "(no task ran)"
        origin = min(starts)
        lines = []
        for task_id, try_number, host, queued, start, end, state in rows:
            at = lambda t: f"{(t - origin).total_seconds():6.1f}" if t else "     -"  # noqa: E731
            lines.append(f"{task_id:28} try {try_number} {host or '-':9} queued {at(queued)} "
                         f"start {at(start)} end {at(end)} {state}")  # fmt: skip
        return "\n".join(lines)

    def task_state(self, job: Job, run_id: str, task_id: str) -> str | None:
        return self.states(job, run_id).get(task_id)

    def xcom(self, job: Job, run_id: str, task_id: str) -> Any:
        rows = self.cluster.query(
            "SELECT value FROM xcom "
            "WHERE dag_id = %s AND run_id = %s AND task_id = %s AND key = 'return_value'",
            (job.dag_id, run_id, task_id),
        )
        value = rows[0][0] if rows else None
        return json.loads(value) if isinstance(value, str) and value.startswith('"') else value

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} within {timeout:.0f} s\n{self.cluster.logs()}")
            time.sleep(0.5)

    @contextlib.contextmanager
    def only_worker(self, name: str) -> Iterator[None]:
        """Every other worker stops taking tasks from the queue (the fixture gives them back)."""
        for other in self.cluster.workers():
            if other != name:
                self.cluster.consume(other, False)
        yield

    def task_log(self, job: Job, run_id: str, task_id: str, try_number: int, worker: str) -> str:
        folder = self.cluster.root / worker / "logs" / f"dag_id={job.dag_id}" / f"run_id={run_id}"
        path = folder / f"task_id={task_id}" / f"attempt={try_number}.log"
        return path.read_text(errors="replace") if path.exists() else ""
