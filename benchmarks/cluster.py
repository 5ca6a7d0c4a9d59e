"""The churn example at 20 countries on a distributed Airflow: 1 vs 2 Celery workers.

    .venv/bin/python benchmarks/cluster.py                  # 20 countries, 4 slots per worker (~35 min)
    .venv/bin/python benchmarks/cluster.py --smoke          # 2 countries: checks the harness (~4 min)
    .venv/bin/python benchmarks/cluster.py --values 10 --concurrency 2

The deployment is the one tests/distributed runs on (tests/servers/airflow_cluster.py: scheduler, DAG
processor, triggerer, api-server, Celery workers with a Redis broker, PostgreSQL metadata DB; moto +
a real sshd as SageMaker; delivery into PostgreSQL), with trivial notebooks (one cell writing one row), so
what is measured is Airflow and the factory's DAG, not notebook work. The same DAG runs twice, first with
worker-1 alone, then with worker-1 and worker-2. From the metadata DB: wall time from trigger
(``dag_run.queued_at``) to the final state (``dag_run.end_date``), and the scheduler's task throughput
(task instances run / time from the first task's start to the last one's end). Results:
benchmarks/out/cluster.json and a table; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-cluster-airflow-"))

import pytest  # noqa: E402  (a MonkeyPatch for the moto ENI patch, as the tests use)
import yaml  # noqa: E402

from tests.distributed.deployment import POOL, POOL_SLOTS, TICK_NOTEBOOKS, Deployment, Job, configure  # noqa: E402
from tests.servers.airflow_cluster import AirflowCluster, running_cluster  # noqa: E402
from tests.servers.moto import running_moto  # noqa: E402
from tests.servers.postgres import run_postgres  # noqa: E402
from tests.servers.sagemaker import DEFAULT_BUCKETS, prepare_sagemaker  # noqa: E402
from tests.servers.sshd import running_sshd  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "cluster.json"
CHURN_MODEL = REPO / "project_configs" / "churn-model.yaml"
RUN_TIMEOUT_S = 1800.0


def countries(n: int) -> list[str]:
    values: list[str] = yaml.safe_load(CHURN_MODEL.read_text())["fan_out"]["values"]
    if n > len(values):
        raise SystemExit(f"--values at most {len(values)} (the churn-model spec's countries)")
    return values[:n]


def churn_shaped(deployment: Deployment, values: list[str]) -> dict[str, Any]:
    """The churn example's DAG (two notebooks, two deliveries: 9 tasks per country), trivial notebooks."""
    spec = deployment.tick_spec("churn-bench", values)
    spec["notebooks"] = [{"path": f"notebooks/{name}", "timeout": "10m"} for name in TICK_NOTEBOOKS]
    spec["deliver"] = [
        {"to": "postgres", "table": f"analytics.bench_{table}", "files": "metrics/*.json"}
        for table in ("scores", "metrics")
    ]
    return spec


def measure(cluster: AirflowCluster, job: Job, run_id: str) -> dict[str, Any]:
    (queued, ended, state), *_ = cluster.query(
        "SELECT queued_at, end_date, state FROM dag_run WHERE dag_id = %s AND run_id = %s",
        (job.dag_id, run_id),
    )
    tasks = cluster.query(
        "SELECT hostname, start_date, end_date FROM task_instance "
        "WHERE dag_id = %s AND run_id = %s AND start_date IS NOT NULL",
        (job.dag_id, run_id),
    )
    first, last = min(t[1] for t in tasks), max(t[2] for t in tasks)
    busy = (last - first).total_seconds()
    per_worker: dict[str, int] = {}
    for host, _, _ in tasks:
        per_worker[host] = per_worker.get(host, 0) + 1
    return {
        "state": state,
        "wall_s": round((ended - queued).total_seconds(), 1),
        "tasks": len(tasks),
        "tasks_per_min": round(len(tasks) / busy * 60, 1),
        "tasks_per_worker": per_worker,
    }


def run_once(deployment: Deployment, job: Job, workers: int, date: dt.date) -> dict[str, Any]:
    cluster = deployment.cluster
    wanted = [f"worker-{i}" for i in range(1, workers + 1)]
    for name in cluster.workers():
        if name not in wanted:
            cluster.stop_worker(name)
    cluster.default_workers = tuple(wanted)
    cluster.ensure_workers()
    run_id = deployment.run(job, date=date, timeout=RUN_TIMEOUT_S)
    result = {"workers": workers, "run_id": run_id, **measure(cluster, job, run_id)}
    print(f"{workers} worker(s): {json.dumps(result)}", flush=True)
    if result["state"] != "success":
        print(deployment.timeline(job, run_id))
    return result


@contextlib.contextmanager
def bench_deployment(concurrency: int) -> Iterator[Deployment]:
    """PostgreSQL, moto, sshd and the cluster, configured as an operator would; all stopped on exit."""
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    monkeypatch = pytest.MonkeyPatch()
    with run_postgres() as postgres, running_moto() as moto, running_sshd() as sshd:
        warehouse = postgres.create_database("warehouse")
        sagemaker = prepare_sagemaker(moto, sshd, monkeypatch, dict(DEFAULT_BUCKETS))
        try:
            with running_cluster(root, postgres, factory_env="cluster", concurrency=concurrency) as cluster:
                configure(cluster, moto, sshd, warehouse)
                yield Deployment(cluster, sagemaker, warehouse, root / "deployment")
        finally:
            monkeypatch.undo()
            sshd.clear_login_env()


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--values", type=int, default=20, help="countries (fan-out values), default 20")
    parser.add_argument("--concurrency", type=int, default=4, help="task slots per Celery worker")
    parser.add_argument("--pool-slots", type=int, default=POOL_SLOTS, help="the SageMaker API pool's slots")
    parser.add_argument("--smoke", action="store_true", help="2 countries: a quick check of the harness")
    parser.add_argument("--json", type=Path, default=OUT)
    args = parser.parse_args()
    values = countries(2 if args.smoke else args.values)
    with bench_deployment(args.concurrency) as deployment:
        if args.pool_slots != POOL_SLOTS:
            deployment.cluster.request(
                "PATCH", f"/api/v2/pools/{POOL}", {"pool": POOL, "slots": args.pool_slots}
            )
        (job,) = deployment.deploy([churn_shaped(deployment, values)])
        runs = [
            run_once(deployment, job, 1, dt.date(2026, 1, 5)),
            run_once(deployment, job, 2, dt.date(2026, 1, 6)),
        ]
    one, two = runs
    report = {
        "values": len(values),
        "tasks_per_run": one["tasks"],
        "concurrency_per_worker": args.concurrency,
        "pool_slots": args.pool_slots,
        "runs": runs,
        "wall_ratio_1_over_2": round(one["wall_s"] / two["wall_s"], 2),
        "throughput_ratio_2_over_1": round(two["tasks_per_min"] / one["tasks_per_min"], 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_table(report)
    return 0 if all(r["state"] == "success" for r in runs) else 1


def print_table(report: dict[str, Any]) -> None:
    print(f"\nchurn example, {report['values']} countries, {report['tasks_per_run']} tasks, "
          f"{report['concurrency_per_worker']} slots per worker, "
          f"{report['pool_slots']} API pool slots")  # fmt: skip
    print("| Celery workers | wall s (trigger -> final) | tasks/min | tasks per worker |")
    print("| ---: | ---: | ---: | --- |")
    for run in report["runs"]:
        per = ", ".join(f"{k} {v}" for k, v in sorted(run["tasks_per_worker"].items()))
        print(f"| {run['workers']} | {run['wall_s']} | {run['tasks_per_min']} | {per} |")
    print(f"wall time 1 worker / 2 workers: {report['wall_ratio_1_over_2']}; "
          f"throughput 2 / 1: {report['throughput_ratio_2_over_1']}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
