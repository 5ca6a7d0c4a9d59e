"""The SSH task of a notebook instance, with the platform's host-key policy (`ssh.host_keys`).

Every run gets a new instance on a recycled private IP, so a known_hosts file cannot help: a key
stored for that IP last week belongs to another instance. The policies:

- `accept-new` (default): the group's first SSH task (prepare) accepts the key the new instance shows
  and records it (XCom `host_key`); every later SSH task of the group requires that same key. A host
  that impersonates the instance after the first connection is refused; one that does so before it
  is not (trust on first use);
- `pinned`: the instance's lifecycle configuration publishes its key to
  `s3://<code bucket>/_host_keys/<instance>.pub`; resolve_ip reads it and every SSH task requires it;
- `off`: no check at all (any host answering on the IP gets the commands and the code).
"""

from __future__ import annotations

from base64 import decodebytes
from typing import Any

from airflow.providers.ssh.operators.ssh import SSHOperator
from airflow.sdk.exceptions import AirflowException

from dag_factory.airflow.tasks import HOST_KEY_XCOM

POLICIES = ("accept-new", "pinned", "off")


def parse_host_key(text: str) -> Any:
    """`<type> <base64>` -> a paramiko key."""
    import paramiko

    words = text.split()
    if len(words) < 2:
        raise AirflowException(f"not an ssh host key (expected '<type> <base64>'): {text!r}")
    return paramiko.PKey.from_type_string(words[0], decodebytes(words[1].encode("ascii")))


class InstanceSSHOperator(SSHOperator):
    """SSHOperator that verifies the instance's host key by the platform's policy."""

    template_fields = (*SSHOperator.template_fields, "host_key")

    def __init__(self, *, host_keys: str, host_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if host_keys not in POLICIES:
            raise ValueError(f"host_keys must be one of {', '.join(POLICIES)}, got {host_keys!r}")
        self.host_keys = host_keys
        self.host_key = host_key  # templated: the key to require, from an earlier task's XCom
        self._context: Any = None

    @property
    def records_host_key(self) -> bool:
        return self.host_keys == "accept-new" and not self.host_key

    def execute(self, context: Any = None) -> bytes | str:
        self._context = context
        return super().execute(context)

    def get_ssh_client(self) -> Any:
        hook = self.hook
        if self.host_keys == "off" or self.records_host_key:
            hook.no_host_key_check = True
            hook.allow_host_key_change = True  # never trust ~/.ssh/known_hosts: the IP is recycled
        elif not self.host_key:
            raise AirflowException(
                f"no host key to verify {hook.remote_host} with (ssh.host_keys: {self.host_keys}); "
                "the task that provides it did not run or published none"
            )
        else:
            hook.host_key = parse_host_key(self.host_key)
            hook.no_host_key_check = False
            # known_hosts is skipped (a stale entry for the recycled IP would refuse the right instance);
            # the key added for this host is still required: paramiko refuses any other
            hook.allow_host_key_change = True
            self.log.info("%s must present host key %s", hook.remote_host, self.host_key)
        client = super().get_ssh_client()
        if self.records_host_key and self._context is not None:
            key = client.get_transport().get_remote_server_key()
            recorded = f"{key.get_name()} {key.get_base64()}"
            self.log.info("host key of %s, required from now on in this run: %s", hook.remote_host, recorded)
            self._context["ti"].xcom_push(key=HOST_KEY_XCOM, value=recorded)
        return client
