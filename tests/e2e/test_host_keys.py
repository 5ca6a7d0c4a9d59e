"""ssh.host_keys: pinned on the e2e harness: the instance's lifecycle configuration publishes its host
key to the code bucket, resolve_ip reads it, every SSH task requires it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dag_factory.compute.sagemaker import host_key_object
from tests.e2e.conftest import E2E, states

pytestmark = pytest.mark.integration

LIFECYCLE = "publish-host-key"
IMPOSTOR_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def _publish_on_start(monkeypatch: pytest.MonkeyPatch, e2e: E2E, host_key: Callable[[], str]) -> None:
    """What the lifecycle configuration's OnStart script does on a real instance (docs/deploy.md):
    `aws s3 cp /etc/ssh/ssh_host_ed25519_key.pub s3://<code bucket>/_host_keys/<instance>.pub`."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.sagemaker.models import SageMakerModelBackend

    created = SageMakerModelBackend.create_notebook_instance
    bucket = e2e.sm.buckets["code"]

    def create_notebook_instance(backend: Any, *args: Any, **kwargs: Any) -> Any:
        notebook = created(backend, *args, **kwargs)
        if kwargs.get("lifecycle_config_name") == LIFECYCLE:
            key = host_key_object(notebook.notebook_instance_name)
            body = host_key().encode() + b" root@ip\n"
            s3_backends[DEFAULT_ACCOUNT_ID]["aws"].put_object(bucket, key, body)
        return notebook

    monkeypatch.setattr(SageMakerModelBackend, "create_notebook_instance", create_notebook_instance)
    e2e.sm.moto.client("sagemaker").create_notebook_instance_lifecycle_config(
        NotebookInstanceLifecycleConfigName=LIFECYCLE, OnStart=[{"Content": "IyEvYmluL2Jhc2gK"}]
    )


def _pinned_job(e2e: E2E) -> tuple[Any, str]:
    """The job and the folder its group works in on the (fake) instance."""
    settings = e2e.platform_settings(lifecycle_config=LIFECYCLE)
    ssh = settings["environments"]["e2e"]["ssh"]
    ssh["host_keys"] = "pinned"
    return e2e.job(["de"], platform=settings), ssh["workdir"].replace("{group}", "de")


def test_pinned_host_key_is_published_and_required(e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> None:
    words = (e2e.sm.sshd.root / "ssh_host_ed25519_key.pub").read_text().split()
    _publish_on_start(monkeypatch, e2e, lambda: f"{words[0]} {words[1]}")
    result = e2e.run(_pinned_job(e2e)[0])
    assert result.state == "success", result.error
    assert result.xcom("de.resolve_ip", key="host_key") == f"{words[0]} {words[1]}"
    assert e2e.rows("analytics.churn_scores") == {"de": 800}
    assert e2e.instances() == []


def test_an_instance_with_another_host_key_gets_no_commands(
    e2e: E2E, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish_on_start(monkeypatch, e2e, lambda: IMPOSTOR_KEY)
    job, workdir = _pinned_job(e2e)
    result = e2e.run(job)
    assert result.state == "failed"
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
