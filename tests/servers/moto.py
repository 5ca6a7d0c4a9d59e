"""An in-process moto server (S3, EC2, SageMaker, ...) on a free loopback port.

``moto_server`` (session) yields its endpoint, ``reset()`` and ``client(service)``; ``aws_env``
(function) points boto3, papermill and Airflow's ``aws_default`` connection at it and clears its state.
A server that cannot start fails the test: there is no skip, in CI or anywhere.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

REGION = "eu-west-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"


@dataclass(frozen=True)
class MotoServer:
    host: str
    port: int

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        """Forget every resource (POST /moto-api/reset)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def client(self, service: str) -> Any:
        """A boto3 client for this server with test credentials."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def airflow_connection(self) -> str:
        """The AIRFLOW_CONN_* value (JSON) for an aws connection to this server."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": ACCESS_KEY,
                "password": SECRET_KEY,
                "extra": {"endpoint_url": self.endpoint_url, "region_name": REGION},
            }
        )


@contextlib.contextmanager
def running_moto() -> Iterator[MotoServer]:
    """A moto server in this process on 127.0.0.1 and a free port, stopped on exit."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        moto = MotoServer(host, int(port))
        moto.reset()  # proves it answers; raises (fails the test) if not
        yield moto
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """A moto server for the whole session, on 127.0.0.1 and a free port."""
    with running_moto() as moto:
        yield moto


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Point boto3 and Airflow's aws_default at the moto server, with clean state."""
    moto_server.reset()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", moto_server.airflow_connection())
    return moto_server
