"""A secrets backend that cannot be reached, as a vault behind a broken network would be."""

from __future__ import annotations

from airflow.secrets.base_secrets import BaseSecretsBackend


class Unreachable(BaseSecretsBackend):
    def get_variable(self, key: str) -> str | None:
        raise ConnectionError("vault.internal:8200 unreachable")

    def get_conn_value(self, conn_id: str) -> str | None:
        raise ConnectionError("vault.internal:8200 unreachable")
