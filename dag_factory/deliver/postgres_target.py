"""Load rows into PostgreSQL through the Airflow postgres provider's hook, with COPY.

The rows go over one batch at a time (one COPY per batch, all in the load's transaction): the worker
holds one batch's CSV, never the whole output's.
"""

from __future__ import annotations

import functools
import io
import json
import logging
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from dag_factory.deliver.batch import Batch
from dag_factory.deliver.errors import DeliveryError
from dag_factory.deliver.files import FileRows, open_rows
from dag_factory.deliver.ledger import LedgerSql, PartitionLoad, ledger_parts, load_once
from dag_factory.deliver.partition import Partition, partition_batches, partition_schema
from dag_factory.deliver.sql import (
    delete_partition,
    prepare_table,
    quote_ident,
    quote_table,
    split_table_name,
)
from dag_factory.spec.job import PostgresDelivery

log = logging.getLogger("dag_factory.deliver")


def postgres_type(arrow_type: pa.DataType) -> str:
    """The PostgreSQL column type for an arrow type (nested values are stored as jsonb)."""
    checks: list[tuple[Any, str]] = [
        (pa.types.is_boolean, "boolean"),
        (lambda t: pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t), "smallint"),
        (lambda t: pa.types.is_int32(t) or pa.types.is_uint16(t), "integer"),
        (lambda t: pa.types.is_int64(t) or pa.types.is_uint32(t), "bigint"),
        (pa.types.is_uint64, "numeric(20)"),
        (lambda t: pa.types.is_float16(t) or pa.types.is_float32(t), "real"),
        (pa.types.is_float64, "double precision"),
        (pa.types.is_date, "date"),
        (pa.types.is_time, "time"),
        (lambda t: pa.types.is_timestamp(t) and t.tz is not None, "timestamptz"),
        (pa.types.is_timestamp, "timestamp"),
        (pa.types.is_duration, "interval"),
        (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), "bytea"),
        (pa.types.is_nested, "jsonb"),
    ]
    if pa.types.is_decimal(arrow_type):
        return f"numeric({arrow_type.precision},{arrow_type.scale})"
    for check, name in checks:
        if check(arrow_type):
            return name
    return "text"  # strings, nulls, dictionaries and anything rare: text round-trips


def load_postgres(conn_id: str, table: str, rows: FileRows | None, load: PartitionLoad) -> int:
    """Create the table if absent, then DELETE the partition (or check the ledger, when appending),
    COPY the rows and write the ledger row (dag_factory.deliver.ledger), in one transaction.

    ``rows`` are the files' rows without partition columns; None means no files (an empty load).
    A transaction-scoped advisory lock on the table name serialises parallel fan-out loads, so two
    values creating the same new table at once do not collide.
    """
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    parts = split_table_name(table)
    conn: Any = PostgresHook(postgres_conn_id=conn_id).get_conn()
    try:
        with conn.cursor() as cur:
            count = _load(cur, parts, table, rows, load)
        conn.commit()
    except Exception as exc:
        conn.rollback()
        if isinstance(exc, DeliveryError):
            raise
        raise DeliveryError(f"table {table}: load failed, nothing changed: {exc}") from exc
    finally:
        conn.close()
    log.info(
        "loaded %d row(s) into postgres table %s (%s, %s)",
        count,
        table,
        load.partition.describe(),
        load.mode,
    )
    return count


def _load(cur: Any, parts: list[str], table: str, rows: FileRows | None, load: PartitionLoad) -> int:
    name = quote_table(parts)
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (".".join(parts),))
    schema = None if rows is None else partition_schema(rows.schema, load.partition)
    create = functools.partial(_create_table, cur, parts)
    if not prepare_table(table, _table_columns(cur, parts), schema, create):
        return 0
    ledger = LedgerSql(quote_table(ledger_parts(parts)), ".".join(parts), quote_ident, "%s")
    _create_ledger(cur, ledger)
    delete = functools.partial(cur.execute, *delete_partition(name, load.partition, "%s"))
    insert = functools.partial(_insert, cur, name, table, rows, load.partition)
    return load_once(cur, ledger, load, delete, insert)


def _create_ledger(cur: Any, ledger: LedgerSql) -> None:
    cur.execute("SELECT to_regclass(%s)", (ledger.name,))
    if cur.fetchone()[0] is None:
        # loads into other tables of the schema may create it at the same moment: one at a time
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("ledger:" + ledger.name,))
        cur.execute(ledger.create())


def _insert(cur: Any, name: str, table: str, rows: FileRows | None, partition: Partition) -> int:
    if rows is None:
        return 0
    count = 0
    columns = ", ".join(quote_ident(f.name) for f in partition_schema(rows.schema, partition))
    for batch in partition_batches(rows, partition, table):
        if batch.num_rows:
            _copy(cur, f"COPY {name} ({columns}) FROM STDIN WITH (FORMAT csv)", _to_csv(batch))
            count += batch.num_rows
    return count


def _table_columns(cur: Any, parts: list[str]) -> list[str] | None:
    if len(parts) == 3:
        raise DeliveryError(
            f"table {'.'.join(parts)}: use schema.table for postgres (the connection names the database)"
        )
    schema_sql = "%s" if len(parts) == 2 else "current_schema()"
    params = ([parts[0]] if len(parts) == 2 else []) + [parts[-1]]
    cur.execute(
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_schema = {schema_sql} AND table_name = %s ORDER BY ordinal_position",
        params,
    )
    found = [r[0] for r in cur.fetchall()]
    return found or None


def _create_table(cur: Any, parts: list[str], schema: pa.Schema) -> None:
    if len(parts) == 2:
        # two new tables in one new schema: lock the schema name too. Only create the schema when
        # missing: CREATE SCHEMA IF NOT EXISTS still needs the privilege
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("schema:" + parts[0],))
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (parts[0],))
        if cur.fetchone() is None:
            cur.execute(f"CREATE SCHEMA {quote_ident(parts[0])}")
    columns = ", ".join(f"{quote_ident(f.name)} {postgres_type(f.type)}" for f in schema)
    cur.execute(f"CREATE TABLE {quote_table(parts)} ({columns})")


def _to_csv(rows: pa.RecordBatch) -> bytes:
    """CSV in PostgreSQL's dialect: nulls unquoted-empty, strings always quoted, nested values as json."""
    columns = []
    for field, column in zip(rows.schema, rows.columns, strict=True):
        if pa.types.is_nested(field.type):
            column = pa.array(
                [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()], pa.string()
            )
        elif pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            column = pa.array(
                [None if v is None else "\\x" + v.hex() for v in column.to_pylist()], pa.string()
            )
        elif pa.types.is_dictionary(field.type):
            column = pc.cast(column, field.type.value_type)
        columns.append(column)
    plain = pa.record_batch(columns, names=rows.column_names)
    out = io.BytesIO()
    pacsv.write_csv(plain, out, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return out.getvalue()


def _copy(cur: Any, sql: str, data: bytes) -> None:
    # the hook hands out psycopg 3 or psycopg2 connections depending on what is installed
    if hasattr(cur, "copy_expert"):
        cur.copy_expert(sql, io.BytesIO(data))
        return
    with cur.copy(sql) as copy:
        copy.write(data)


def deliver_to(target: PostgresDelivery, batch: Batch) -> int:
    """The dispatcher's entry: load the batch into the target's table over the postgres connection."""
    return load_postgres(batch.connections.postgres, target.table, open_rows(batch.files), batch.load)
