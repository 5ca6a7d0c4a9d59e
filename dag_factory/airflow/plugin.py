"""The Airflow plugin (entry point `airflow.plugins` in pyproject.toml): our operator extra links, so
that workers, the dag-processor and the api-server all know them by class, and the scheduler listener
that clears a cleared task's setups with it (dag_factory.airflow.listeners)."""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from dag_factory.airflow import listeners as setup_listener
from dag_factory.airflow.links import LINKS


class DagFactoryPlugin(AirflowPlugin):
    name = "dag_factory"
    operator_extra_links: list[Any] = list(LINKS.values())  # noqa: RUF012 (AirflowPlugin's own declaration)
    listeners: list[Any] = [setup_listener]  # noqa: RUF012
