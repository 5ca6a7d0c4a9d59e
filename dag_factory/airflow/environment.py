"""Which platform environment the DAG files of this Airflow deployment build for."""

from __future__ import annotations

from dag_factory import settings

DEFAULT_ENV = "local"
VARIABLE = "dag_factory_env"


def current_env() -> str:
    """$DAG_FACTORY_ENV, else the Airflow Variable dag_factory_env, else local."""
    env = settings.environment()
    if env:
        return env
    try:
        from airflow.sdk import Variable

        return str(Variable.get(VARIABLE, default=DEFAULT_ENV))
    except Exception:  # no metadata DB or API reachable while parsing: the embedded default
        return DEFAULT_ENV
