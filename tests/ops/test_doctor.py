"""`dag-factory doctor` on a deployment: a real Airflow metadata DB and api-server (the e2e session's,
with its `sagemaker_api` pool of 4), moto for SageMaker/EC2/S3/STS, the real sshd, a real PostgreSQL.

One deployment, set up once; each case breaks one item (through its platform file or its
connection), and all cases run at once as `dag-factory doctor` processes, as an operator would run it
on a worker. Each must exit 1 with exactly its one FAIL line; the unbroken deployment exits 0.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from dag_factory.local.airflow_home import ApiServer
from tests.e2e.harness import DEMO_PROJECT, DEMO_SPEC
from tests.servers.airflow import POOL
from tests.servers.airflow_api import AirflowApi
from tests.servers.moto import MotoServer
from tests.servers.ports import free_port
from tests.servers.postgres import PostgresServer
from tests.servers.sagemaker import DEFAULT_BUCKETS, ROLE_ARN, seed_buckets, seed_network
from tests.servers.sshd import SshdServer

pytestmark = pytest.mark.integration

ENV = "doctor"
CLOSED_SSH = "closed_ssh"
DOCTOR = (
    sys.executable,
    "-m",
    "dag_factory.cli.app",
    "doctor",
)  # an SSH connection to a port where nothing listens


def platform(network: Any, postgres_conn: str, **overrides: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "backend": "sagemaker",
        "account_id": "123456789012",  # moto's
        "region": "eu-west-1",
        "role_arn": ROLE_ARN,
        "subnet_id": network.subnet_id,
        "security_group_ids": [network.security_group_id],
        "buckets": dict(DEFAULT_BUCKETS),
        "connections": {"aws": "aws_default", "ssh": "ssh_default", "postgres": postgres_conn},
        "api_pool": {"name": POOL, "slots": 4},
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            env[key] = {**env[key], **value}
        else:
            env[key] = value
    return {"version": 1, "environments": {ENV: env}}


def write_bundle(folder: Path, settings: dict[str, Any]) -> Path:
    """The platform file and one spec beside it (postgres targets, and an s3 one into the data bucket)."""
    folder.mkdir(parents=True)
    spec = yaml.safe_load(DEMO_SPEC.read_text())
    spec["project_dir"] = str(DEMO_PROJECT)
    spec["deliver"].append({"to": "s3", "prefix": "exports/churn", "files": "predictions/*.parquet",
                            "bucket": "data"})  # fmt: skip
    (folder / "churn-demo.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    path = folder / "platform.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def doctor(platform_file: Path, env: dict[str, str], *extra: str) -> tuple[int, str]:
    done = subprocess.run(
        [*DOCTOR, "--env", ENV, "--platform", str(platform_file), *extra],
        env=env, cwd=platform_file.parent, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fail_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("FAIL")]


def test_doctor_fails_with_one_line_for_each_broken_item(
    tmp_path: Path,
    moto_server: MotoServer,
    sshd_server: SshdServer,
    postgres_db: PostgresServer,
    airflow_server: ApiServer,
) -> None:
    moto_server.reset()
    network = seed_network(moto_server.client("ec2"))
    seed_buckets(moto_server.client("s3"), DEFAULT_BUCKETS.values())
    # the warehouse connection lives in the metadata DB (created as an operator would, through the
    # REST API): doctor finds it as the scheduler does; the others come from AIRFLOW_CONN_* variables
    postgres_conn = f"doctor_pg_{uuid.uuid4().hex[:8]}"
    pg = postgres_db
    AirflowApi(airflow_server.url).call("POST", "/api/v2/connections", {
        "connection_id": postgres_conn, "conn_type": "postgres", "host": pg.host, "port": pg.port,
        "login": pg.user, "password": pg.password, "schema": pg.dbname,
    })  # fmt: skip
    closed = json.loads(sshd_server.airflow_conn_json())
    closed["port"] = free_port()
    env = {
        **os.environ,
        **airflow_server.env,
        "DAG_FACTORY_ENV": ENV,
        "AIRFLOW_CONN_AWS_DEFAULT": moto_server.airflow_connection(),
        "AIRFLOW_CONN_SSH_DEFAULT": sshd_server.airflow_conn_json(),
        f"AIRFLOW_CONN_{CLOSED_SSH.upper()}": json.dumps(closed),
    }
    b = DEFAULT_BUCKETS
    cases: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
        "all ok": ({}, env),
        "pool missing": ({"api_pool": {"name": "sagemaker_api_prod"}}, env),
        "pool mis-sized": ({"api_pool": {"slots": 6}}, env),
        "connection missing": ({"connections": {"postgres": "warehouse_missing"}}, env),
        "ssh unreachable": ({"connections": {"ssh": CLOSED_SSH}}, env),
        "bucket missing": ({"buckets": {"output": "nb-output-missing"}}, env),
        "subnet missing": ({"subnet_id": "subnet-0doctor404"}, env),
    }
    files = {
        name: write_bundle(tmp_path / name.replace(" ", "-"), platform(network, postgres_conn, **overrides))
        for name, (overrides, _) in cases.items()
    }
    started, cpu = time.monotonic(), _children_cpu()
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = {name: pool.submit(doctor, files[name], cases[name][1]) for name in cases}
        answers = {name: run.result() for name, run in runs.items()}
    print(f"\n{len(cases)} doctor runs: {time.monotonic() - started:.1f}s, {_children_cpu() - cpu:.1f} CPU-s")

    assert answers["all ok"][0] == 0, answers["all ok"][1]
    lines = answers["all ok"][1].splitlines()
    assert lines[-1] == f"{len(lines) - 1} checks, all ok"
    for what in (
        f"ok    pool {POOL}  (4 slots)",
        f"ok    ssh connection ssh_default  (logged in to {sshd_server.host}:{sshd_server.port})",
        f"ok    postgres connection {postgres_conn}  (connected, SELECT 1)",
        "ok    aws connection aws_default  (account 123456789012)",
        f"ok    data bucket s3://{b['data']} (read, write)",
        "ok    ec2:DescribeNetworkInterfaces allowed (dry run)",
        "ok    plugin dag_factory registered  (links: Executed notebook, Notebook source, Run report)",
        f"ok    environment setting  ({ENV}, from $DAG_FACTORY_ENV)",
    ):
        assert what in lines, answers["all ok"][1]

    how = "airflow pools set"
    create = (
        'not defined: create it (airflow connections add warehouse_missing --conn-json \'{"conn_type": '
        '"postgres", "host": "...", "login": "...", "password": "...", "schema": "..."}\', '
        "or a secrets backend; docs/deploy.md, Connections), or name another in the platform file's "
        "connections.postgres"
    )
    ssh, port = sshd_server.host, closed["port"]
    expected = {
        "pool missing": [
            f'FAIL  pool sagemaker_api_prod  (missing: {how} sagemaker_api_prod 4 "SageMaker API calls")'
        ],
        "pool mis-sized": [
            f'FAIL  pool {POOL}  (4 slots, the platform file says 6: {how} {POOL} 6 "SageMaker API calls")'
        ],
        "connection missing": [f"FAIL  postgres connection warehouse_missing  ({create})"],
        "ssh unreachable": [
            f"FAIL  ssh connection {CLOSED_SSH}  (cannot log in to {ssh}:{port}: NoValidConnectionsError: "
            f"[Errno None] Unable to connect to port {port} on {ssh})"
        ],
        "bucket missing": [
            "FAIL  output bucket s3://nb-output-missing (read)  (no such bucket: create it, or fix "
            "buckets.output in the platform file)"
        ],
        "subnet missing": [
            "FAIL  subnet subnet-0doctor404  (not found in eu-west-1: fix subnet_id in the platform file)"
        ],
    }
    found = {name: (code, fail_lines(output)) for name, (code, output) in answers.items() if name != "all ok"}
    assert found == {name: (1, lines) for name, lines in expected.items()}
