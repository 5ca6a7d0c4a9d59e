"""The Airflow plugin (entry point `airflow.plugins` in pyproject.toml): our operator extra links, so
that workers, the dag-processor and the api-server all know them by class, the scheduler listener
that clears a cleared task's setups with it (dag_factory.airflow.listeners), and the api-server's
route to the local files those links name (dag_factory.airflow.files_app)."""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from dag_factory.airflow import listeners as setup_listener
from dag_factory.airflow.links import LINKS


class DagFactoryPlugin(AirflowPlugin):
    name = "dag_factory"
    operator_extra_links: list[Any] = list(LINKS.values())  # noqa: RUF012 (AirflowPlugin's own declaration)
    listeners: list[Any] = [setup_listener]  # noqa: RUF012

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Built when the api-server asks for it: no other component imports FastAPI for it."""
        from dag_factory.airflow.files_app import URL_PREFIX, create_app

        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "dag-factory local files"}]
