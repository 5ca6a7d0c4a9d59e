"""Load files from a Snowflake stage: SQL generated as plain strings, run in one transaction.

The statements for one partition (identifiers always quoted: a column named ``values``, ``start`` or a
fan-out named ``group`` is a reserved word to Snowflake; plain names are upper-cased first, which is how
Snowflake resolves them unquoted, so notebook column ``score`` is column ``SCORE``)::

    CREATE TABLE IF NOT EXISTS "ML"."CHURN_SCORES" (...)             -- DDL commits: before BEGIN
    CREATE TABLE IF NOT EXISTS "ML"."_DAG_FACTORY_DELIVERIES" (...)   -- the ledger (deliver.ledger)
    BEGIN
    SELECT ... FROM "ML"."_DAG_FACTORY_DELIVERIES" WHERE ...          -- append: delivered already?
    DELETE FROM "ML"."CHURN_SCORES" WHERE "LOGICAL_DATE" = '2026-01-05'::DATE AND "COUNTRY" = 'de'
    COPY INTO "ML"."CHURN_SCORES" ("C1", ..., "LOGICAL_DATE", "COUNTRY")
      FROM (SELECT $1:"c1"::TYPE, ..., '2026-01-05'::DATE, 'de' FROM @"ML"."NOTEBOOK_OUTPUTS")
      FILES = ('churn-model/scheduled__2026-01-05T04:00:00+00:00/de/predictions/a.parquet', ...)
      FILE_FORMAT = (...) FORCE = TRUE                                -- FORCE: replace mode only
    DELETE + INSERT the ledger row
    COMMIT

The stage is an external stage over the root of the output bucket, and FILES lists the exact objects
we matched as string literals (at most 1000 per COPY, Snowflake's limit): the run id's ``:`` and ``+``
stay inside quotes, and Snowflake loads what the glob matched and nothing else. FORCE = TRUE, which
turns off Snowflake's 64-day load history, is needed only where the partition was just deleted (else a
re-run would delete the rows and then load nothing); an append keeps the load history as a second guard
behind the ledger.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from dag_factory.deliver.batch import Batch
from dag_factory.deliver.errors import DeliveryError
from dag_factory.deliver.files import SourceFile, file_format, open_rows, split_s3_url
from dag_factory.deliver.ledger import LedgerSql, PartitionLoad, ledger_parts, load_once
from dag_factory.deliver.partition import DATE_COLUMN, Partition, check_partition_values
from dag_factory.deliver.sql import check_columns, quote_ident, split_table_name
from dag_factory.spec.job import SnowflakeDelivery

log = logging.getLogger("dag_factory.deliver")

MAX_FILES = 1000
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FILE_FORMATS = {"parquet": "TYPE = PARQUET", "json": "TYPE = JSON STRIP_OUTER_ARRAY = TRUE"}


def snowflake_type(arrow_type: pa.DataType) -> str:
    """The Snowflake column type for an arrow type (nested values become VARIANT)."""
    if pa.types.is_decimal(arrow_type):
        return f"NUMBER({arrow_type.precision},{arrow_type.scale})"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP_NTZ" if arrow_type.tz is None else "TIMESTAMP_TZ"
    checks: list[tuple[Any, str]] = [
        (pa.types.is_boolean, "BOOLEAN"),
        (pa.types.is_integer, "NUMBER(38,0)"),
        (pa.types.is_floating, "FLOAT"),
        (pa.types.is_date, "DATE"),
        (pa.types.is_time, "TIME"),
        (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), "BINARY"),
        (pa.types.is_nested, "VARIANT"),
    ]
    for check, name in checks:
        if check(arrow_type):
            return name
    return "VARCHAR"


def column_name(name: str) -> str:
    """Snowflake column for a file field, quoted: plain names upper case (as Snowflake resolves them
    unquoted, so existing tables match), others exactly as the file has them."""
    return quote_ident(name.upper() if _PLAIN.match(name) else name)


def string_literal(value: str) -> str:
    """Snowflake string literal: backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def table_name(table: str) -> str:
    """The table as written in SQL: each part upper case and quoted."""
    return _quoted_name(split_table_name(table))


def _quoted_name(parts: Sequence[str]) -> str:
    return ".".join(quote_ident(p.upper()) for p in parts)


def stage_reference(stage: str) -> str:
    """``@"DB"."SCHEMA"."STAGE"`` for a stage named like a table (an ``@`` in front is allowed)."""
    return "@" + _quoted_name(split_table_name(stage.removeprefix("@"), "stage"))


def target_columns(schema: pa.Schema, partition: Partition) -> list[tuple[str, str]]:
    """(file field, Snowflake type) for the files' fields, without the partition columns."""
    return [(f.name, snowflake_type(f.type)) for f in schema if f.name not in partition.columns]


def create_table_sql(table: str, columns: Sequence[tuple[str, str]], partition: Partition) -> str:
    """CREATE TABLE IF NOT EXISTS with the file columns then the partition columns."""
    defs = [f"{column_name(n)} {t}" for n, t in columns] + [_partition_defs(partition)]
    return f"CREATE TABLE IF NOT EXISTS {table_name(table)} ({', '.join(defs)})"


def _partition_defs(partition: Partition) -> str:
    defs = [f"{column_name(DATE_COLUMN)} DATE"]
    if partition.column is not None:
        defs.append(f"{column_name(partition.column)} VARCHAR")
    return ", ".join(defs)


def expected_columns(columns: Sequence[tuple[str, str]], partition: Partition) -> list[str]:
    """Column names the table must have, as Snowflake reports them (plain ones upper case)."""
    names = [n for n, _ in columns] + partition.columns
    return [n.upper() if _PLAIN.match(n) else n for n in names]


def delete_sql(table: str, partition: Partition) -> str:
    """DELETE the partition's rows (replace mode, before the COPY)."""
    literals = _partition_literals(partition)
    where = " AND ".join(f"{column_name(c)} = {v}" for c, v in zip(partition.columns, literals, strict=True))
    return f"DELETE FROM {table_name(table)} WHERE {where}"


def copy_sql(
    table: str,
    columns: Sequence[tuple[str, str]],
    stage: str,
    files: Sequence[str],
    file_format: str,
    partition: Partition,
    mode: str = "replace_partition",
) -> str:
    """COPY the files into the table, the partition columns as literals.

    ``columns`` are (file field, Snowflake type); ``files`` are paths from the stage's root.
    """
    if len(files) > MAX_FILES:
        raise DeliveryError(
            f"table {table}: {len(files)} files match, but a snowflake COPY takes at most {MAX_FILES}: "
            "write fewer, larger files"
        )
    if file_format not in _FILE_FORMATS:
        raise DeliveryError(f"file format {file_format!r}: snowflake loads only {', '.join(_FILE_FORMATS)}")
    into = ", ".join([column_name(n) for n, _ in columns] + [column_name(c) for c in partition.columns])
    select = ", ".join([f"$1:{quote_ident(n)}::{t}" for n, t in columns] + _partition_literals(partition))
    listed = ", ".join(string_literal(f) for f in files)
    force = " FORCE = TRUE" if mode == "replace_partition" else ""
    return (
        f"COPY INTO {table_name(table)} ({into}) FROM (SELECT {select} FROM {stage_reference(stage)}) "
        f"FILES = ({listed}) FILE_FORMAT = ({_FILE_FORMATS[file_format]}){force}"
    )


def _partition_literals(partition: Partition) -> list[str]:
    literals = [f"{string_literal(partition.logical_date.isoformat())}::DATE"]
    if partition.value is not None:
        literals.append(string_literal(partition.value))
    return literals


def ledger_sql(table: str) -> LedgerSql:
    """The ledger beside the table; parameters bound by the connector (its pyformat ``%s``)."""
    parts = split_table_name(table)
    return LedgerSql(_quoted_name(ledger_parts(parts)), ".".join(parts).upper(), column_name, "%s")


def run_load(conn: Any, table: str, schema: pa.Schema | None, copy: str | None, load: PartitionLoad) -> int:
    """Create the table if absent and check its columns, then load (``copy``, None for no files) with
    the ledger row in one transaction; return the rows delivered.

    ``conn`` is a DB-API connection (the SnowflakeHook's); any failure rolls the transaction back.
    """
    partition = load.partition
    cur = conn.cursor()
    try:
        if schema is not None:
            _prepare_table(cur, table, target_columns(schema, partition), partition)
        elif not _table_exists(cur, table):
            return 0  # an empty delivery into a table never created: nothing to replace
        ledger = ledger_sql(table)
        cur.execute(ledger.create())  # DDL commits implicitly in snowflake, so it runs before BEGIN
        cur.execute("BEGIN")
        delete = functools.partial(cur.execute, delete_sql(table, partition))
        loaded = load_once(cur, ledger, load, delete, functools.partial(_copy, cur, copy))
        cur.execute("COMMIT")
    except Exception as exc:
        with contextlib.suppress(Exception):  # keep the load's own error, not a failed rollback's
            cur.execute("ROLLBACK")
        if isinstance(exc, DeliveryError):
            raise
        raise DeliveryError(f"table {table}: load failed, nothing changed: {exc}") from exc
    finally:
        cur.close()
    return loaded


def _copy(cur: Any, sql: str | None) -> int:
    if sql is None:
        return 0
    cur.execute(sql)
    return _rows_loaded(cur)


def _prepare_table(cur: Any, table: str, columns: list[tuple[str, str]], partition: Partition) -> None:
    # DDL commits implicitly in snowflake, so it runs before BEGIN
    cur.execute(create_table_sql(table, columns, partition))
    cur.execute(f"SELECT * FROM {table_name(table)} LIMIT 0")
    existing = [d[0] for d in cur.description]
    check_columns(table, existing, expected_columns(columns, partition))


def _table_exists(cur: Any, table: str) -> bool:
    parts = split_table_name(table)
    schema_sql = "CURRENT_SCHEMA()" if len(parts) == 1 else string_literal(parts[-2].upper())
    cur.execute(
        "SELECT COUNT(*) FROM INFORMATION_SCHEMA.TABLES "
        f"WHERE TABLE_SCHEMA = {schema_sql} AND TABLE_NAME = {string_literal(parts[-1].upper())}"
    )
    return bool(cur.fetchone()[0])


def _rows_loaded(cur: Any) -> int:
    names = [d[0].lower() for d in cur.description or []]
    if "rows_loaded" not in names:
        return 0  # "Copy executed with 0 files processed."
    index = names.index("rows_loaded")
    return sum(int(row[index] or 0) for row in cur.fetchall())


def load_snowflake(
    conn_id: str,
    table: str,
    schema: pa.Schema | None,
    stage: str,
    files: Sequence[str],
    file_format: str,
    load: PartitionLoad,
) -> int:
    """Generate the load SQL and run it through the Airflow SnowflakeHook; return rows delivered.

    ``stage`` names an external stage over the output bucket's root; ``files`` are object keys there.
    """
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

    partition = load.partition
    columns = target_columns(schema, partition) if schema is not None else []
    copy = copy_sql(table, columns, stage, files, file_format, partition, load.mode) if files else None
    conn = SnowflakeHook(snowflake_conn_id=conn_id).get_conn()
    try:
        count = run_load(conn, table, schema, copy, load)
    finally:
        conn.close()
    log.info(
        "loaded %d row(s) into snowflake table %s (%s, %s)",
        count,
        table,
        partition.describe(),
        load.mode,
    )
    return count


def deliver_to(target: SnowflakeDelivery, batch: Batch) -> int:
    """The dispatcher's entry: COPY the batch's objects from the target's stage into its table."""
    if not batch.source_prefix.startswith("s3://"):
        raise DeliveryError(
            f"snowflake target: source {batch.source_prefix} is not in s3, so no stage can see it: "
            "deliver from an s3 output prefix"
        )
    rows = open_rows(batch.files)  # the files' schema, from parquet footers: no row read yet
    if rows is not None:
        check_partition_values(rows, batch.partition, target.table)  # snowflake reads the rows itself
    return load_snowflake(
        batch.connections.snowflake,
        target.table,
        rows.schema if rows is not None else None,
        target.stage,
        [split_s3_url(f.location)[1] for f in batch.files],  # the stage is over the bucket's root
        _single_format(batch.files),
        batch.load,
    )


def _single_format(files: list[SourceFile]) -> str:
    formats = sorted({file_format(f.relative) for f in files})
    if len(formats) > 1:
        raise DeliveryError(
            f"snowflake target: files mix {' and '.join(formats)}: match one format per target"
        )
    return formats[0] if formats else "parquet"
