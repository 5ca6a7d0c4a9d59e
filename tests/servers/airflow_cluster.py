"""A distributed Airflow on loopback, as docs/deploy.md sets one up: for tests and `make bench`.

``running_cluster(root, postgres, ...)`` starts, in this order, and stops (every process tree, also
when a test or the start-up fails):

- Debian's ``redis-server`` (tests/servers/redis.py), the Celery broker;
- a metadata database ``airflow_cluster`` on the session's PostgreSQL, migrated with ``airflow db migrate``;
- ``airflow api-server`` (dag_factory.local.airflow_home.api_server), then ``scheduler``,
  ``dag-processor``, ``triggerer`` and Celery workers (``airflow celery worker``), each named
  (``worker-1``, ...) with its own working directory and AIRFLOW_HOME, reporting its name as its
  hostname (tests/servers/worker_identity.py);
- every component has its own copy of the DAG bundle (as each machine has its own checkout of a git
  bundle); :meth:`AirflowCluster.publish` copies the source folder to all of them.

Connections and pools are created through the REST API (``add_connection``, ``set_pool``); DAG runs
are created with the operator CLI (``airflow dags trigger``), never with ``dag.test``. State is read from
the PostgreSQL metadata DB and the REST API.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from dag_factory.local.airflow_home import SIMPLE_AUTH_MANAGER, ApiServer, api_server, log_tail, migrate
from tests.paths import REPO
from tests.servers.airflow_api import AirflowApi
from tests.servers.postgres import PostgresServer
from tests.servers.redis import RedisServer, running_redis
from tests.servers.worker_identity import VARIABLE as WORKER_NAME_VARIABLE

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
METADATA_DB = "airflow_cluster"
EXECUTION_API = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"
QUEUE = "default"  # [operators] default_queue
START_TIMEOUT_S = 240.0
FINAL_STATES = frozenset({"success", "failed"})
# not for production: every component that signs or checks a task token shares them
JWT_SECRET = "cluster-test-jwt-secret"
API_SECRET_KEY = "cluster-test-api-secret-key"


def component_env(
    home: Path,
    *,
    bundle: Path,
    database: PostgresServer,
    broker: str,
    factory_env: str | None,
    parallelism: int = 8,
) -> dict[str, str]:
    """The environment of one component: the settings docs/deploy.md lists, for a home on loopback."""
    sql = f"postgresql+psycopg2://{database.user}:{database.password}@{database.host}:{database.port}"
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{sql}/{database.dbname}",
        "AIRFLOW__CELERY__BROKER_URL": broker,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{sql}/{database.dbname}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(bundle),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # no more tasks queued than the workers have slots: a task waiting in the broker counts
        # against [scheduler] task_queued_timeout (600 s) and is failed when it passes
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
        "AIRFLOW__API__SECRET_KEY": API_SECRET_KEY,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # a new DAG file shows up within seconds (default 5 min)
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "3",
        # tasks call the api-server's Execution API; on a loaded 2-core machine answers took > 5 s
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
        # a dead worker's task is failed (and retried) after 30 s, not 5 min
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        # a worker that cannot load a DAG hands its task back after 2 s, not 60 (test (c) waits through
        # all of Airflow's startup reschedules: the count, missing_dag_retries, stays the default)
        "AIRFLOW__WORKERS__MISSING_DAG_RETRY_DELAY": "2",
        "PYTHONPATH": str(REPO),  # tests.servers.worker_identity
        "PYTHONUNBUFFERED": "1",
    }
    if factory_env is not None:
        env["DAG_FACTORY_ENV"] = factory_env
    return env


def clean_environ() -> dict[str, str]:
    """This process's environment without Airflow's, dag-factory's and AWS's variables (the test
    session's own home, DAG_FACTORY_ENV=local, moto credentials): a component gets only its own."""
    prefixes = ("AIRFLOW", "DAG_FACTORY_", "AWS_", WORKER_NAME_VARIABLE)
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


@dataclass
class Component:
    """One long-running Airflow process (and its children) with its home, bundle copy and log."""

    name: str
    argv: list[str]
    env: dict[str, str]
    home: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def bundle(self) -> Path:
        return Path(self.env["AIRFLOW__CORE__DAGS_FOLDER"])

    @property
    def log_path(self) -> Path:
        return self.home / f"{self.name}.log"

    def start(self) -> None:
        self.bundle.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, env={**clean_environ(), **self.env}, cwd=self.home, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM, grace: float = 5.0) -> None:
        """Send ``sig`` to the process and every descendant (task processes run in their own process
        groups), SIGKILL whatever is left after ``grace`` seconds."""
        stop_components([self], sig, grace)

    def kill(self) -> None:
        """SIGKILL the whole tree at once: the machine died."""
        self.stop(signal.SIGKILL, grace=5)

    def log_tail(self, lines: int = 40) -> str:
        return f"--- {self.name} ({self.log_path}) ---\n{log_tail(self.log_path, lines)}"


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@dataclass
class AirflowCluster:
    root: Path
    source_bundle: Path  # what publish() copies to every component
    api: ApiServer
    redis: RedisServer
    metadata: PostgresServer
    factory_env: str
    concurrency: int = 2
    default_workers: tuple[str, ...] = ()
    components: dict[str, Component] = field(default_factory=dict)

    # --- operating it ------------------------------------------------------------------------------
    def airflow(self, *args: str, timeout: float = 180) -> str:
        """Run the operator CLI (``airflow ARGS``) against the cluster; its stdout, or raise."""
        env = {**clean_environ(), **self.api.env}
        proc = subprocess.run(
            [AIRFLOW, *args], env=env, cwd=self.root, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            command = " ".join(args)
            raise RuntimeError(f"airflow {command} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def request(self, method: str, path: str, body: Any = None, attempts: int = 3) -> Any:
        """A REST API call; a GET that times out is asked again (``attempts`` in all)."""
        return AirflowApi(self.api.url, timeout=30, get_attempts=attempts).call(method, path, body)

    def add_connection(self, conn_id: str, conn: Mapping[str, Any]) -> None:
        """POST /api/v2/connections (``conn`` as Airflow's JSON form; extra a dict)."""
        body = {"connection_id": conn_id, **conn}
        if isinstance(body.get("extra"), dict):
            body["extra"] = json.dumps(body["extra"])
        self.request("POST", "/api/v2/connections", body)

    def set_pool(self, name: str, slots: int, description: str) -> None:
        self.request("POST", "/api/v2/pools", {"name": name, "slots": slots, "description": description})

    def publish(self) -> None:
        """Copy the source bundle to every component's copy: workers first, the DAG processor last, so a
        DAG is never scheduled before the workers have its files."""
        order = sorted(self.components.values(), key=lambda c: c.name == "dag-processor")
        for component in order:
            sync_tree(self.source_bundle, component.bundle)

    def wait_parsed(self, dag_id: str, timeout: float = 180) -> dict[str, Any]:
        """The DAG as the REST API shows it, once the DAG processor has serialized it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(urllib.error.HTTPError):
                dag: dict[str, Any] = self.request("GET", f"/api/v2/dags/{dag_id}")
                if not dag["is_stale"] and dag["last_parsed_time"]:
                    return dag
            time.sleep(1)
        raise TimeoutError(f"DAG {dag_id} not parsed within {timeout:.0f} s\n{self.logs('dag-processor')}")

    def trigger(self, dag_id: str, logical_date: dt.date | None, run_id: str) -> str:
        """``POST /api/v2/dags/{dag_id}/dagRuns`` as an operator's tooling would; ``logical_date`` None
        triggers a run without one. Returns the run id."""
        when = None
        if logical_date is not None:
            when = dt.datetime.combine(logical_date, dt.time(), tzinfo=dt.UTC).isoformat()
        answer = self.request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": when}
        )
        return str(answer["dag_run_id"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in FINAL_STATES:
                return state
            time.sleep(1)
        raise TimeoutError(f"run {dag_id} {run_id} not final within {timeout:.0f} s\n{self.logs()}")

    # --- workers -----------------------------------------------------------------------------------
    def start_worker(
        self, name: str, *, concurrency: int = 2, factory_env: str | None = "", wait: bool = True
    ) -> Component:
        """Start ``airflow celery worker`` named ``name`` (its own home and bundle copy); ``factory_env``
        None starts it without DAG_FACTORY_ENV (a misconfigured worker), "" with the cluster's."""
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        env = component_env(
            home, bundle=home / "bundle", database=self.metadata, broker=self.redis.url,
            factory_env=self.factory_env if factory_env == "" else factory_env,
        )  # fmt: skip
        env.update(self._shared_env())
        env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = "tests.servers.worker_identity.hostname"
        env[WORKER_NAME_VARIABLE] = name
        argv = [
            AIRFLOW, "celery", "worker", "--celery-hostname", self.node(name),
            "--concurrency", str(concurrency), "--queues", QUEUE,
            "--skip-serve-logs", "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        worker = self.components[name] = Component(name, argv, env, home)
        sync_tree(self.source_bundle, worker.bundle)
        worker.start()
        if wait:
            self.wait_workers([name])
        return worker

    def ensure_workers(self) -> None:
        """Restart the cluster's own workers (worker-1 ...) that a test killed."""
        dead = [n for n in self.default_workers if n not in self.components or not self.components[n].alive()]
        for name in dead:
            self.start_worker(name, concurrency=self.concurrency, wait=False)
        if dead:
            self.wait_workers(dead)

    def node(self, name: str) -> str:
        return f"{name}@dag-factory-test"

    def workers(self) -> list[str]:
        return sorted(n for n in self.components if n.startswith("worker"))

    def celery(self) -> Any:
        from celery import Celery

        return Celery(broker=self.redis.url)

    def wait_workers(self, names: list[str], timeout: float = START_TIMEOUT_S) -> None:
        wanted = {self.node(n) for n in names}
        app = self.celery()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answered = {node for reply in app.control.ping(timeout=1.0) for node in reply}
            if wanted <= answered:
                return
            dead = [n for n in names if not self.components[n].alive()]
            if dead:
                raise RuntimeError(f"worker {dead} exited:\n{self.logs(*dead)}")
        raise TimeoutError(f"workers {sorted(wanted)} did not answer a ping\n{self.logs(*names)}")

    def consume(self, name: str, on: bool) -> None:
        """Let worker ``name`` take tasks from the queue, or not (Celery's add/cancel_consumer)."""
        control = self.celery().control
        change = control.add_consumer if on else control.cancel_consumer
        replies = change(QUEUE, destination=[self.node(name)], reply=True, timeout=10)
        if not replies:
            raise RuntimeError(f"worker {name} did not answer {'add' if on else 'cancel'}_consumer")

    def stop_worker(self, name: str) -> None:
        self.components.pop(name).stop()

    # --- reading state -----------------------------------------------------------------------------
    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.metadata.connect() as conn:
            return list(conn.execute(sql, params).fetchall())

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
        return str(rows[0][0]) if rows and rows[0][0] else None

    def logs(self, *names: str) -> str:
        chosen = [self.components[n] for n in names if n in self.components] or list(self.components.values())
        return "\n".join(c.log_tail() for c in chosen)

    def _shared_env(self) -> dict[str, str]:
        return {EXECUTION_API: self.api.env[EXECUTION_API]}


def stop_components(
    components: list[Component], sig: signal.Signals = signal.SIGTERM, grace: float = 5.0
) -> None:
    """Signal every process tree at once, SIGKILL what is left after ``grace`` seconds, reap them.
    A second Ctrl-C meanwhile would leave processes behind: SIGINT waits until they are gone."""
    with _sigint_deferred():
        _stop_trees(components, sig, grace)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def _stop_trees(components: list[Component], sig: signal.Signals, grace: float) -> None:
    started = [c.process for c in components if c.process is not None]
    trees = [proc for popen in started for proc in process_tree(popen.pid)]
    for proc in trees:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)
    _, alive = psutil.wait_procs(trees, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    for popen in started:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=5)


def sync_tree(source: Path, target: Path) -> None:
    """Make ``target`` hold exactly ``source``'s files (copy new/changed, remove the rest)."""
    target.mkdir(parents=True, exist_ok=True)
    wanted = {p.relative_to(source) for p in source.rglob("*")} if source.exists() else set()
    for path in sorted(target.rglob("*"), reverse=True):
        relative = path.relative_to(target)
        if relative not in wanted and "__pycache__" not in relative.parts:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    for relative in sorted(wanted):
        src, dst = source / relative, target / relative
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
        elif not dst.exists() or dst.read_bytes() != src.read_bytes():
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)  # a parser never sees half a file


def _wait_healthy(cluster: AirflowCluster, timeout: float = START_TIMEOUT_S) -> None:
    """Until /api/v2/monitor/health says scheduler, DAG processor and triggerer are healthy."""
    deadline = time.monotonic() + timeout
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        health = cluster.request("GET", "/api/v2/monitor/health")
        parts = ("scheduler", "dag_processor", "triggerer")
        if all((health.get(p) or {}).get("status") == "healthy" for p in parts):
            return
        dead = [c.name for c in cluster.components.values() if not c.alive()]
        if dead:
            raise RuntimeError(f"{dead} exited during start-up:\n{cluster.logs(*dead)}")
        time.sleep(1)
    raise TimeoutError(f"cluster not healthy within {timeout:.0f} s: {health}\n{cluster.logs()}")


@contextlib.contextmanager
def running_cluster(
    root: Path, postgres: PostgresServer, *, factory_env: str, workers: int = 2, concurrency: int = 2
) -> Iterator[AirflowCluster]:
    """Start the whole deployment under ``root``; stop every process and drop its database on exit.
    The scheduler's parallelism is the workers' slots (``workers`` x ``concurrency``)."""
    source = root / "bundle-source"
    source.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(running_redis(root / "redis"))
        postgres.drop_database(METADATA_DB)
        metadata = postgres.create_database(METADATA_DB)
        stack.callback(postgres.drop_database, METADATA_DB)
        home = root / "operator"
        env = component_env(home, bundle=home / "bundle", database=metadata, broker=redis.url,
                            factory_env=factory_env)  # fmt: skip
        home.mkdir(parents=True)
        migrate({**clean_environ(), **env})
        api = stack.enter_context(api_server({**clean_environ(), **env}, timeout=START_TIMEOUT_S))
        names = tuple(f"worker-{index}" for index in range(1, workers + 1))
        cluster = AirflowCluster(root, source, api, redis, metadata, factory_env, concurrency, names)
        stack.callback(lambda: stop_components(list(cluster.components.values())))
        for name in ("scheduler", "dag-processor", "triggerer"):
            component_home = root / name
            component_home.mkdir()
            # the triggerer's log server would take the fixed port 8794: another cluster may run beside
            argv = [AIRFLOW, name, *(["--skip-serve-logs"] if name == "triggerer" else [])]
            component = Component(
                name, argv,
                {**component_env(component_home, bundle=component_home / "bundle", database=metadata,
                                 broker=redis.url, factory_env=factory_env,
                                 parallelism=workers * concurrency), **cluster._shared_env()},
                component_home,
            )  # fmt: skip
            cluster.components[name] = component
            component.start()
        cluster.ensure_workers()
        _wait_healthy(cluster)
        yield cluster
