"""ssh.host_keys: pinned on the e2e harness: the instance's lifecycle configuration publishes its host
key to the code bucket, resolve_ip reads it, every SSH task requires it.

The publication is the product's own: the OnStart script docs/deploy.md gives operators, registered as
the platform's lifecycle configuration and run, as SageMaker runs it, on the instance when it starts
(here: over SSH on the sshd that plays the instance, see ``_run_lifecycle_scripts``).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import textwrap
from typing import Any

import pytest

from tests.e2e.harness import E2E, states
from tests.paths import REPO

pytestmark = pytest.mark.integration

LIFECYCLE = "publish-host-key"
IMPOSTOR_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
DEPLOY_GUIDE = REPO / "docs" / "deploy.md"
# the instance's own files the lifecycle scripts read: SageMaker's metadata and the instance's sshd keys.
# The sshd host plays every instance, so each instance keeps them in a folder of its own and these
# absolute paths in its scripts are read below that folder.
INSTANCE_PATHS = ("/opt/ml/", "/etc/ssh/")


def documented_on_start(code_bucket: str) -> str:
    """The OnStart script docs/deploy.md gives for `ssh.host_keys: pinned`, filled in as an operator does."""
    guide = DEPLOY_GUIDE.read_text()
    found = re.search(r"OnStart script.*?```bash\n(.*?)\n\s*```", guide, re.DOTALL)
    assert found, f"{DEPLOY_GUIDE} has no OnStart script for pinned host keys"
    return textwrap.dedent(found.group(1)).replace("<code bucket>", code_bucket) + "\n"


def _register_lifecycle_config(e2e: E2E) -> None:
    """What the operator does once per account (docs/deploy.md): the script as a lifecycle configuration."""
    script = documented_on_start(e2e.sm.buckets["code"])
    e2e.sm.moto.client("sagemaker").create_notebook_instance_lifecycle_config(
        NotebookInstanceLifecycleConfigName=LIFECYCLE,
        OnStart=[{"Content": base64.b64encode(script.encode()).decode()}],
    )


def _run_lifecycle_scripts(
    monkeypatch: pytest.MonkeyPatch, e2e: E2E, instance_host_key: str
) -> list[subprocess.CompletedProcess[str]]:
    """Make moto do what SageMaker does when an instance with a lifecycle configuration starts: run the
    configuration's scripts (OnCreate, then OnStart) as root on the instance, whose files include
    SageMaker's metadata and its sshd's public host key (``instance_host_key``); a script that exits
    non-zero makes the start fail. Returns the scripts' runs, in order."""
    from moto.sagemaker.models import SageMakerModelBackend

    created = SageMakerModelBackend.create_notebook_instance
    runs: list[subprocess.CompletedProcess[str]] = []

    def create_notebook_instance(backend: Any, *args: Any, **kwargs: Any) -> Any:
        name = kwargs["notebook_instance_name"]
        config = backend.notebook_instance_lifecycle_configurations.get(kwargs.get("lifecycle_config_name"))
        if config is not None:
            for hook in [*(config.on_create or []), *(config.on_start or [])]:
                script = base64.b64decode(hook["Content"]).decode()
                runs.append(_on_instance(e2e, backend, name, script, instance_host_key))
                if runs[-1].returncode != 0:
                    e2e.sm.aws.fail_lifecycle(config.notebook_instance_lifecycle_config_name)
                    break
        return created(backend, *args, **kwargs)

    monkeypatch.setattr(SageMakerModelBackend, "create_notebook_instance", create_notebook_instance)
    return runs


def _on_instance(
    e2e: E2E, backend: Any, name: str, script: str, host_key: str
) -> subprocess.CompletedProcess[str]:
    root = e2e.tmp_path / "instances" / name
    metadata = root / "opt" / "ml" / "metadata" / "resource-metadata.json"
    metadata.parent.mkdir(parents=True, exist_ok=True)
    arn = f"arn:aws:sagemaker:{backend.region_name}:{backend.account_id}:notebook-instance/{name}"
    metadata.write_text(json.dumps({"ResourceArn": arn, "ResourceName": name}))
    keys = root / "etc" / "ssh"
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "ssh_host_ed25519_key.pub").write_text(f"{host_key} root@ip-10-0-0-1\n")
    for path in INSTANCE_PATHS:
        script = script.replace(path, f"{root}{path}")
    on_start = root / "on-start.sh"
    on_start.write_text(script)
    return e2e.sm.sshd.run(f"bash {on_start}", timeout=60)


def _sshd_host_key(e2e: E2E) -> str:
    words = (e2e.sm.sshd.root / "ssh_host_ed25519_key.pub").read_text().split()
    return f"{words[0]} {words[1]}"


def _pinned_job(e2e: E2E) -> tuple[Any, str]:
    """The job and the folder its group works in on the (fake) instance."""
    settings = e2e.platform_settings(lifecycle_config=LIFECYCLE)
    ssh = settings["environments"]["e2e"]["ssh"]
    ssh["host_keys"] = "pinned"
    return e2e.job(["de"], platform=settings), ssh["workdir"].replace("{group}", "de")


def _ran_cleanly(runs: list[subprocess.CompletedProcess[str]]) -> None:
    assert runs, "no instance ran the lifecycle configuration"
    for run in runs:
        assert run.returncode == 0, f"the OnStart script failed: {run.stdout}{run.stderr}"


def test_pinned_host_key_is_published_and_required(e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> None:
    _register_lifecycle_config(e2e)
    runs = _run_lifecycle_scripts(monkeypatch, e2e, _sshd_host_key(e2e))
    result = e2e.run(_pinned_job(e2e)[0])
    _ran_cleanly(runs)
    assert result.state == "success", result.error
    assert result.xcom("de.resolve_ip", key="host_key") == _sshd_host_key(e2e)
    assert e2e.rows("analytics.churn_scores") == {"de": 800}
    assert e2e.instances() == []


def test_an_instance_with_another_host_key_gets_no_commands(
    e2e: E2E, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the instance publishes its own key, but the host that answers at its address shows another one
    _register_lifecycle_config(e2e)
    runs = _run_lifecycle_scripts(monkeypatch, e2e, IMPOSTOR_KEY)
    job, workdir = _pinned_job(e2e)
    result = e2e.run(job)
    _ran_cleanly(runs)
    assert result.state == "failed"
    assert result.xcom("de.resolve_ip", key="host_key") == IMPOSTOR_KEY
    got = states(result, "de")
    assert got["prepare"] == "failed" and got["nb_01_features"] == "upstream_failed", got
    prepare = result.ti("de.prepare")
    assert "BadHostKeyException" in prepare.error
    # not an infrastructure fault worth retrying (the spec's retries: 1): the same host answers again
    assert prepare.try_number == 1 and "not retried: the host at this address is not the instance" in (
        prepare.error
    )
    assert got["delete_instance"] == "success" and e2e.instances() == []
    # nothing was synced to the host that answered with the wrong key
    assert not (e2e.sm.sshd.home / workdir).exists()
