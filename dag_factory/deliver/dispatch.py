"""One entry point for the Airflow task: deliver one fan-out value's output files to one target.

A target is the spec's delivery model (`spec.job.Delivery`) as the plan carries it, plain JSON::

    {"to": "duckdb", "path": "warehouse.duckdb", "table": "ml.churn_scores", "files": "predictions/*.parquet"}
    {"to": "postgres", "table": "ml.churn_scores", "files": "..."}
    {"to": "s3", "prefix": "curated/churn", "bucket": "my-output-bucket", "files": "..."}
    {"to": "snowflake", "table": "ML.CHURN_SCORES", "stage": "ML.NOTEBOOK_OUTPUTS", "files": "..."}

The plan fills in what the platform decides (the DuckDB file, the bucket a role names), so the model
validates it in its planned form (`PLANNED`). Each target's loader is a module of this package with a
``deliver_to`` function, imported only when its target is delivered: a Snowflake load never imports
duckdb. Adding a target is its model in `spec/job.py`, its loader module, and its row in `LOADERS`.

Every target also takes ``mode`` ("replace_partition", the default, or "append") and ``allow_empty``
(default false: no matching file is an error). The database targets record each load in a ledger keyed
by the run id (dag_factory.deliver.ledger), so a retried append adds nothing.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
from typing import Any, NamedTuple

from pydantic import TypeAdapter, ValidationError

from dag_factory.deliver.batch import Batch, Connections
from dag_factory.deliver.errors import DeliveryError
from dag_factory.deliver.files import list_files, require_files
from dag_factory.deliver.ledger import PartitionLoad
from dag_factory.deliver.partition import Partition
from dag_factory.extras import require
from dag_factory.spec.job import DELIVERY_MODELS, PLANNED, Delivery

log = logging.getLogger("dag_factory.deliver")


class Loader(NamedTuple):
    """A target's loader module (it defines `deliver_to(target, batch) -> rows`) and what it needs beyond
    the [airflow] extra: (extra, module), checked before the loader is imported."""

    module: str
    needs: tuple[str, str] | None = None


# Each target's loader, by its model's `to`
LOADERS = {
    "duckdb": Loader("dag_factory.deliver.duckdb_target", ("local", "duckdb")),
    "postgres": Loader("dag_factory.deliver.postgres_target", ("postgres", "airflow.providers.postgres")),
    "s3": Loader("dag_factory.deliver.s3_target"),
    "snowflake": Loader("dag_factory.deliver.snowflake_target", ("snowflake", "airflow.providers.snowflake")),
}
_TARGETS: TypeAdapter[Any] = TypeAdapter(Delivery)


def deliver(
    target: dict[str, Any],
    source_prefix: str,
    logical_date: dt.date | str,
    partition_column: str | None = None,
    partition_value: str | None = None,
    *,
    run_id: str | None = None,
    try_number: int | None = None,
    postgres_conn_id: str = "postgres_default",
    snowflake_conn_id: str = "snowflake_default",
    aws_conn_id: str = "aws_default",
) -> int:
    """Load the files matching ``target['files']`` under ``source_prefix`` into the target; return rows.

    ``source_prefix`` is a local directory or an ``s3://bucket/prefix/`` URL; ``logical_date`` a date or
    an ISO date string (JSON-able, for XCom and templates). ``run_id`` keys the load in the ledger (the
    Airflow run id; without it the source prefix, ``<head>/<run id>/<value>``, names the run) and
    ``try_number`` is recorded there.
    """
    model = planned_target(target)
    partition = Partition(_as_date(logical_date), partition_column, partition_value)
    found = LOADERS[model.to]
    if found.needs is not None:
        extra, module = found.needs
        require(extra, module, f"delivering to {model.to}")
    loader = importlib.import_module(found.module)
    needs_s3 = source_prefix.startswith("s3://") or model.to == "s3"
    client = _s3_client(aws_conn_id) if needs_s3 else None
    files = list_files(source_prefix, model.files, client)
    require_files(files, source_prefix, model.files, model.allow_empty)
    log.info(
        "delivering %d file(s) from %s to %s (%s)", len(files), source_prefix, model.to, partition.describe()
    )
    batch = Batch(
        files,
        source_prefix,
        partition,
        PartitionLoad(run_id or source_prefix, partition, model.mode, try_number),
        Connections(postgres_conn_id, snowflake_conn_id, aws_conn_id),
        client,
    )
    rows: int = loader.deliver_to(model, batch)
    return rows


def planned_target(target: dict[str, Any]) -> Any:
    """The target's delivery model, validated as the plan carries it; a DeliveryError names what is wrong."""
    try:
        return _TARGETS.validate_python(target, context=PLANNED)
    except ValidationError as exc:
        raise DeliveryError(_target_problem(target, exc)) from None


def _target_problem(target: dict[str, Any], exc: ValidationError) -> str:
    kind = target.get("to")
    model = DELIVERY_MODELS.get(str(kind))
    if model is None:
        return f"deliver target 'to: {kind}': unknown target: use one of {', '.join(sorted(DELIVERY_MODELS))}"
    errors = exc.errors()
    unknown = sorted(str(e["loc"][-1]) for e in errors if e["type"] == "extra_forbidden")
    missing = sorted(str(e["loc"][-1]) for e in errors if e["type"] == "missing")
    if unknown or missing:
        return (
            f"deliver target {kind}: unknown keys: {', '.join(unknown) or '-'}; missing keys: "
            f"{', '.join(missing) or '-'} (allowed: {', '.join(sorted(model.model_fields))})"
        )
    return f"deliver target {kind}: " + "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors
    )


def _as_date(value: dt.date | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise DeliveryError(f"logical date {value!r} is not an ISO date (YYYY-MM-DD)") from exc


def _s3_client(aws_conn_id: str) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id).get_conn()
