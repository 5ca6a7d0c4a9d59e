"""Run a generated DAG through real Airflow on this machine, fan-out in parallel, with live progress."""

from dag_factory.runner.airflow_home import (
    AirflowHomeError,
    ApiServer,
    airflow_env,
    api_server,
    prepare_airflow_home,
)
from dag_factory.runner.execute import RunResult, TaskInstanceResult, TaskProgress, XComEntry, run_dag
from dag_factory.runner.progress import LiveProgress, SummaryRow, render_progress, render_summary

__all__ = [
    "AirflowHomeError",
    "ApiServer",
    "LiveProgress",
    "RunResult",
    "SummaryRow",
    "TaskInstanceResult",
    "TaskProgress",
    "XComEntry",
    "airflow_env",
    "api_server",
    "prepare_airflow_home",
    "render_progress",
    "render_summary",
    "run_dag",
]
