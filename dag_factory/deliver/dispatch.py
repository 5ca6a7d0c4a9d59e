"""One entry point for the Airflow task: deliver one fan-out value's output files to one target.

Target dicts (plain JSON, from the plan)::

    {"to": "duckdb", "path": "warehouse.duckdb", "table": "ml.churn_scores", "files": "predictions/*.parquet"}
    {"to": "postgres", "table": "ml.churn_scores", "files": "..."}
    {"to": "s3", "prefix": "curated/churn", "bucket": "optional", "files": "..."}
    {"to": "snowflake", "table": "ML.CHURN_SCORES", "stage": "ML.NOTEBOOK_OUTPUTS", "files": "..."}

A snowflake stage is an external stage over the root of the output bucket.

Every target also takes ``mode`` ("replace_partition", the default, or "append") and ``allow_empty``
(default false: no matching file is an error). The database targets record each load in a ledger keyed
by the run id (dag_factory.deliver.ledger), so a retried append adds nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from dag_factory.deliver.duckdb_target import load_duckdb
from dag_factory.deliver.errors import DeliveryError
from dag_factory.deliver.files import (
    SourceFile,
    file_format,
    list_files,
    open_rows,
    require_files,
    split_s3_url,
)
from dag_factory.deliver.ledger import PartitionLoad
from dag_factory.deliver.partition import Partition, check_mode, check_partition_values
from dag_factory.deliver.postgres_target import load_postgres
from dag_factory.deliver.s3_target import load_s3, partition_url
from dag_factory.deliver.snowflake_target import load_snowflake

log = logging.getLogger("dag_factory.deliver")

COMMON_KEYS = {"to", "files", "mode", "allow_empty"}
TARGET_KEYS = {
    "duckdb": {"path", "table"},
    "postgres": {"table"},
    "s3": {"prefix", "bucket"},
    "snowflake": {"table", "stage"},
}
REQUIRED_KEYS = {
    "duckdb": {"path", "table"},
    "postgres": {"table"},
    "s3": {"prefix"},
    "snowflake": {"table", "stage"},
}


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
    kind = _check_target(target)
    partition = Partition(_as_date(logical_date), partition_column, partition_value)
    pattern = str(target["files"])
    mode = check_mode(str(target.get("mode", "replace_partition")))
    allow_empty = bool(target.get("allow_empty", False))
    if kind == "snowflake" and not source_prefix.startswith("s3://"):
        raise DeliveryError(
            f"snowflake target: source {source_prefix} is not in s3, so no stage can see it: "
            "deliver from an s3 output prefix"
        )
    needs_s3 = source_prefix.startswith("s3://") or kind == "s3"
    client = _s3_client(aws_conn_id) if needs_s3 else None
    files = list_files(source_prefix, pattern, client)
    require_files(files, source_prefix, pattern, allow_empty)
    log.info(
        "delivering %d file(s) from %s to %s (%s)", len(files), source_prefix, kind, partition.describe()
    )
    if kind == "s3":
        return load_s3(client, files, s3_target_url(target, source_prefix, partition), mode)
    load = PartitionLoad(run_id or source_prefix, partition, mode, try_number)
    rows = open_rows(files)  # the files' schema, from parquet footers: no row read yet
    table = str(target["table"])
    if kind == "duckdb":
        return load_duckdb(str(target["path"]), table, rows, load)
    if kind == "postgres":
        return load_postgres(postgres_conn_id, table, rows, load)
    if rows is not None:
        check_partition_values(rows, partition, table)  # snowflake reads the rows itself: check them here
    return load_snowflake(
        snowflake_conn_id,
        table,
        rows.schema if rows is not None else None,
        str(target["stage"]),
        [split_s3_url(f.location)[1] for f in files],  # the stage is over the bucket's root
        _single_format(files),
        load,
    )


def _check_target(target: dict[str, Any]) -> str:
    kind = target.get("to")
    if kind not in TARGET_KEYS:
        raise DeliveryError(
            f"deliver target 'to: {kind}': unknown target: use one of {', '.join(TARGET_KEYS)}"
        )
    unknown = sorted(set(target) - COMMON_KEYS - TARGET_KEYS[kind])
    missing = sorted(({"files"} | REQUIRED_KEYS[kind]) - set(target))
    if unknown or missing:
        raise DeliveryError(
            f"deliver target {kind}: unknown keys: {', '.join(unknown) or '-'}; missing keys: "
            f"{', '.join(missing) or '-'} (allowed: {', '.join(sorted(COMMON_KEYS | TARGET_KEYS[kind]))})"
        )
    return str(kind)


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


def s3_target_url(target: dict[str, Any], source_prefix: str, partition: Partition) -> str:
    prefix = str(target["prefix"])
    if prefix.startswith("s3://"):
        bucket, key = split_s3_url(prefix)
        return partition_url(bucket, key, partition)
    bucket = str(target.get("bucket") or "")
    if not bucket and source_prefix.startswith("s3://"):
        bucket = split_s3_url(source_prefix)[0]
    if not bucket:
        raise DeliveryError(f"s3 target prefix {prefix!r}: no bucket: set bucket: or use an s3:// prefix")
    return partition_url(bucket, prefix, partition)


def _single_format(files: list[SourceFile]) -> str:
    formats = sorted({file_format(f.relative) for f in files})
    if len(formats) > 1:
        raise DeliveryError(
            f"snowflake target: files mix {' and '.join(formats)}: match one format per target"
        )
    return formats[0] if formats else "parquet"
