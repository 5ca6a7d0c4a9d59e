"""The Airflow plugin (entry point `airflow.plugins` in pyproject.toml): our operator extra links, so
that workers, the dag-processor and the api-server all know them by class."""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from dag_factory.airflow.links import LINKS


class DagFactoryPlugin(AirflowPlugin):
    name = "dag_factory"
    operator_extra_links: list[Any] = list(LINKS.values())  # noqa: RUF012 (AirflowPlugin's own declaration)
