"""The sshd fixture: a real OpenSSH server whose login stands in for a SageMaker notebook instance."""

from __future__ import annotations

import pytest

from tests.servers import sshd as sshd_module
from tests.servers.sshd import SshdServer, SshdStartError

pytestmark = pytest.mark.integration


def test_login_lands_in_home_and_activates_the_fake_conda_env(sshd_server: SshdServer) -> None:
    command = (
        f"pwd && {sshd_server.activate_command('python3')} && echo $CONDA_DEFAULT_ENV"
        " && python -c 'import sys, papermill, ipykernel, boto3; print(sys.prefix, papermill.__version__)'"
        " && command -v papermill pip aws"
    )
    result = sshd_server.run(command)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    env_prefix = sshd_server.conda_envs["python3"]
    assert lines[0] == str(sshd_server.home)
    assert lines[1] == "python3"
    assert lines[2:4] == [str(env_prefix), "2.7.0"]
    assert lines[4:6] == [str(env_prefix / "bin" / tool) for tool in ("papermill", "pip")]
    assert lines[6:] == [str(sshd_server.activate_script.parent / "aws")]


def test_activate_accepts_the_sagemaker_form_and_rejects_unknown_envs(sshd_server: SshdServer) -> None:
    assert sshd_server.activate_script.parts[-3:] == ("anaconda3", "bin", "activate")
    result = sshd_server.run(f"source {sshd_server.activate_script} no_such_env; echo rc=$?")
    assert "rc=1" in result.stdout
    assert "no conda env named 'no_such_env'" in result.stderr


def test_every_pool_address_reaches_the_same_sshd(sshd_server: SshdServer) -> None:
    assert len(sshd_server.addresses) == 16  # sshd's MAX_LISTEN_SOCKS
    assert sshd_server.addresses[0] == sshd_server.host == "127.0.0.1"
    for address in (sshd_server.addresses[1], sshd_server.addresses[-1]):
        result = sshd_server.run("echo $SSH_CONNECTION", host=address)
        assert result.returncode == 0, (address, result.stderr)
        assert result.stdout.split()[2:] == [address, str(sshd_server.port)]


def test_login_env_reaches_commands_and_is_cleared(sshd_server: SshdServer) -> None:
    sshd_server.set_login_env({"HARNESS_VALUE": 'a "quoted" value'})
    try:
        assert sshd_server.run("echo $HARNESS_VALUE").stdout.strip() == 'a "quoted" value'
    finally:
        sshd_server.clear_login_env()
    assert sshd_server.run("echo ${HARNESS_VALUE:-unset}").stdout.strip() == "unset"


def test_pip_sees_the_project_packages_and_installs_only_into_the_login_env(sshd_server: SshdServer) -> None:
    result = sshd_server.run(
        f"{sshd_server.activate_command()} && pip install papermill==2.7.0 ipykernel && pip --version",
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert "Requirement already satisfied: papermill==2.7.0" in result.stdout
    assert str(sshd_server.conda_envs["python3"]) in result.stdout.splitlines()[-1]


def test_airflow_ssh_hook_runs_commands_from_the_connection_env_var(
    sshd_server: SshdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.ssh.hooks.ssh import SSHHook

    for value in (sshd_server.airflow_conn_uri(), sshd_server.airflow_conn_json()):
        monkeypatch.setenv("AIRFLOW_CONN_SSH_DEFAULT", value)
        hook = SSHHook(ssh_conn_id="ssh_default", remote_host="127.0.1.7", cmd_timeout=30)
        with hook.get_conn() as client:
            status, out, err = hook.exec_ssh_client_command(
                client, "echo $SSH_CONNECTION", get_pty=False, environment=None
            )
        assert status == 0, err
        assert out.decode().split()[2:] == ["127.0.1.7", str(sshd_server.port)]


def test_a_failed_start_raises_with_the_sshd_log(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    real_config = sshd_module._sshd_config
    monkeypatch.setattr(sshd_module, "_sshd_config", lambda *args: real_config(*args) + "NoSuchOption yes\n")
    with pytest.raises(SshdStartError, match=r"(?s)sshd did not start.*NoSuchOption"):
        sshd_module.start_sshd(tmp_path)
