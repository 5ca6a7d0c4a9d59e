"""The host-key policy of the SSH tasks, against a real OpenSSH server."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from dag_factory.airflow.ssh import InstanceSSHOperator
from tests.servers.sshd import SshdServer

pytestmark = pytest.mark.integration

# a valid ed25519 key that is not the server's
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


class RecordingTI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@pytest.fixture
def ssh_conn(sshd_server: SshdServer, monkeypatch: pytest.MonkeyPatch) -> SshdServer:
    monkeypatch.setenv("AIRFLOW_CONN_SSH_DEFAULT", sshd_server.airflow_conn_json())
    return sshd_server


def _server_key(server: SshdServer) -> str:
    words = (server.root / "ssh_host_ed25519_key.pub").read_text().split()
    return f"{words[0]} {words[1]}"


def _run(server: SshdServer, host_keys: str, host_key: str | None, ti: RecordingTI | None = None) -> str:
    operator = InstanceSSHOperator(
        task_id="nb", ssh_conn_id="ssh_default", remote_host=server.addresses[1], command="echo ran",
        cmd_timeout=30, host_keys=host_keys, host_key=host_key,
    )  # fmt: skip
    ti = ti or RecordingTI()
    out = operator.execute({"ti": ti, "task_instance": ti})
    return base64.b64decode(out).decode().strip()


def test_accept_new_records_the_key_the_instance_shows(ssh_conn: SshdServer, tmp_path: Path) -> None:
    ti = RecordingTI()
    assert _run(ssh_conn, "accept-new", None, ti) == "ran"
    assert ti.pushed["host_key"] == _server_key(ssh_conn)


def test_a_recorded_or_published_key_is_required(ssh_conn: SshdServer) -> None:
    import paramiko

    for policy in ("accept-new", "pinned"):
        assert _run(ssh_conn, policy, _server_key(ssh_conn)) == "ran"
        with pytest.raises(paramiko.BadHostKeyException):
            _run(ssh_conn, policy, OTHER_KEY)


def test_a_stale_known_hosts_entry_for_the_recycled_ip_is_ignored(
    ssh_conn: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    host = f"[{ssh_conn.addresses[1]}]:{ssh_conn.port}"
    (tmp_path / ".ssh" / "known_hosts").write_text(f"{host} {OTHER_KEY}\n")
    assert _run(ssh_conn, "pinned", _server_key(ssh_conn)) == "ran"


def test_pinned_without_a_published_key_runs_nothing(ssh_conn: SshdServer) -> None:
    from airflow.sdk.exceptions import AirflowException

    with pytest.raises(AirflowException, match=r"no host key to verify 127\.0\.1\.1 with"):
        _run(ssh_conn, "pinned", "")


def test_off_checks_nothing(ssh_conn: SshdServer) -> None:
    assert _run(ssh_conn, "off", None) == "ran"
