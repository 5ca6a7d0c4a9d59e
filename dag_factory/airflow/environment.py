"""Which platform environment a DAG is built for, and the check every task makes that it still is.

The environment decides the backend (SageMaker instances or this machine) and the warehouse, so it is
never guessed: `$DAG_FACTORY_ENV`, else the Airflow Variable `dag_factory_env` (from any secrets
backend, e.g. `AIRFLOW_VAR_DAG_FACTORY_ENV`), else the DAG file fails to import with an error that says
how to set it. A DAG file may pin it (`dag-factory dags --env prod`, local runs), and then every task,
before it runs, checks that the worker executing it is configured for that same environment: a worker
set up for another environment fails the task instead of running it on the wrong backend.
"""

from __future__ import annotations

from typing import Any

from dag_factory import settings
from dag_factory.errors import DagFactoryError

VARIABLE = "dag_factory_env"
HOW_TO_SET = (
    f"set ${settings.ENV} on every Airflow component (scheduler, dag-processor, triggerer, workers), "
    f"e.g. {settings.ENV}=prod, or the Airflow Variable {VARIABLE} "
    f"(`airflow variables set {VARIABLE} prod`, or AIRFLOW_VAR_{VARIABLE.upper()}=prod)"
)


class EnvironmentUnknown(DagFactoryError):
    """The environment could not be determined: unset, or its Variable could not be read."""


def _variable() -> str | None:
    """The Variable from the secrets backends Airflow uses in this process; None when no backend has it.

    Each backend is asked in turn, as Variable.get does, but a backend that fails is reported as that
    failure: Variable.get would log it and answer "not found", which reads as "unset".
    """
    from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded

    failures = []
    for backend in ensure_secrets_backend_loaded():
        try:
            value = backend.get_variable(key=VARIABLE)
        except Exception as exc:  # any backend (a vault, the API, the DB) may fail in its own way
            failures.append(f"{type(backend).__name__}: {type(exc).__name__}: {exc}")
            continue
        if value is not None:
            return str(value).strip() or None
    if failures:
        raise EnvironmentUnknown(
            f"could not read the Airflow Variable {VARIABLE} ({'; '.join(failures)}); "
            f"fix the secrets backend, or set ${settings.ENV}"
        )
    return None


def current_env() -> str:
    """$DAG_FACTORY_ENV, else the Airflow Variable dag_factory_env; never a default."""
    env = settings.environment() or _variable()
    if env is None:
        raise EnvironmentUnknown(f"the dag-factory environment is not set: {HOW_TO_SET}")
    return env


def check_environment(built_for: str, context: Any = None) -> None:
    """A task's pre-execute hook: fail (without retries) unless this worker is configured for
    ``built_for``, the environment the DAG was built for."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        configured = current_env()
    except EnvironmentUnknown as exc:
        raise AirflowFailException(
            f"this DAG was built for environment {built_for!r}, but this worker has none: {exc}"
        ) from None
    if configured != built_for:
        raise AirflowFailException(
            f"this DAG was built for environment {built_for!r}, but this worker is configured for "
            f"{configured!r}: the task would run on the wrong backend, so it does not run; "
            f"configure every component of this deployment for one environment ({HOW_TO_SET})"
        )
