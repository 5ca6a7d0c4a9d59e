"""Load files from a Snowflake stage: SQL generated as plain strings, run in one transaction.

The statements for one partition::

    BEGIN
    DELETE FROM T WHERE LOGICAL_DATE = '2026-01-05'::DATE AND COUNTRY = 'de'     -- replace mode only
    COPY INTO T (C1, ..., LOGICAL_DATE, COUNTRY)
      FROM (SELECT $1:"c1"::TYPE, ..., '2026-01-05'::DATE, 'de' FROM @STAGE/path/)
      FILES = ('predictions/a.parquet', ...) FILE_FORMAT = (...) FORCE = TRUE
    COMMIT

FILES lists the exact files we matched (at most 1000 per COPY, Snowflake's limit), so Snowflake loads
what the glob matched and nothing else. FORCE = TRUE is needed because Snowflake skips files it loaded
in the last 64 days: without it a re-run would delete the partition and then load nothing.
``stage_ref`` is any stage reference (``@ML.NOTEBOOK_OUTPUTS/churn-model/...`` for an external stage
over the output bucket in production, an internal stage in tests): one generator serves both.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from dag_factory.deliver.errors import DeliveryError
from dag_factory.deliver.partition import DATE_COLUMN, Partition, check_mode
from dag_factory.deliver.sql import check_columns, quote_ident, split_table_name

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
    """Snowflake column for a file field: plain names unquoted (so upper case), others quoted as is."""
    return name.upper() if _PLAIN.match(name) else quote_ident(name)


def string_literal(value: str) -> str:
    """Snowflake string literal: backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def table_name(table: str) -> str:
    """The table as written in SQL: plain dotted names, upper case (Snowflake's unquoted resolution)."""
    return ".".join(split_table_name(table)).upper()


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
    """Column names the table must have, as Snowflake reports them (unquoted ones upper case)."""
    names = [n for n, _ in columns] + partition.columns
    return [n.upper() if _PLAIN.match(n) else n for n in names]


def load_sql(
    table: str,
    columns: Sequence[tuple[str, str]],
    stage_ref: str,
    files: Sequence[str],
    file_format: str,
    partition: Partition,
    mode: str = "replace_partition",
) -> list[str]:
    """The statements that replace (or append to) one partition from staged files, in one transaction.

    ``columns`` are (file field, Snowflake type); ``files`` are paths relative to ``stage_ref``.
    No files means no COPY: in replace mode the partition is emptied.
    """
    check_mode(mode)
    if len(files) > MAX_FILES:
        raise DeliveryError(
            f"{len(files)} files match under {stage_ref}: a snowflake COPY takes at most {MAX_FILES}; "
            f"write fewer, larger files"
        )
    if file_format not in _FILE_FORMATS:
        raise DeliveryError(f"file format {file_format!r}: snowflake loads only {', '.join(_FILE_FORMATS)}")
    name = table_name(table)
    literals = _partition_literals(partition)
    statements = ["BEGIN"]
    if mode == "replace_partition":
        where = " AND ".join(
            f"{column_name(c)} = {v}" for c, v in zip(partition.columns, literals, strict=True)
        )
        statements.append(f"DELETE FROM {name} WHERE {where}")
    if files:
        into = ", ".join([column_name(n) for n, _ in columns] + [column_name(c) for c in partition.columns])
        select = ", ".join([f"$1:{quote_ident(n)}::{t}" for n, t in columns] + literals)
        listed = ", ".join(string_literal(f) for f in files)
        statements.append(
            f"COPY INTO {name} ({into}) FROM (SELECT {select} FROM {stage_ref.rstrip('/')}/) "
            f"FILES = ({listed}) FILE_FORMAT = ({_FILE_FORMATS[file_format]}) FORCE = TRUE"
        )
    statements.append("COMMIT")
    return statements


def _partition_literals(partition: Partition) -> list[str]:
    literals = [f"{string_literal(partition.logical_date.isoformat())}::DATE"]
    if partition.value is not None:
        literals.append(string_literal(partition.value))
    return literals


def run_load(
    conn: Any, table: str, schema: pa.Schema | None, statements: list[str], partition: Partition
) -> int:
    """Create the table if absent, check its columns, then run the statements; return rows loaded.

    ``conn`` is a DB-API connection (the SnowflakeHook's); any failure rolls the transaction back.
    """
    cur = conn.cursor()
    try:
        if schema is not None:
            _prepare_table(cur, table, target_columns(schema, partition), partition)
        elif not _table_exists(cur, table):
            return 0  # an empty delivery into a table never created: nothing to replace
        loaded = 0
        for sql in statements:
            cur.execute(sql)
            if sql.startswith("COPY INTO"):
                loaded += _rows_loaded(cur)
    except Exception as exc:
        with contextlib.suppress(Exception):  # keep the load's own error, not a failed rollback's
            cur.execute("ROLLBACK")
        if isinstance(exc, DeliveryError):
            raise
        raise DeliveryError(f"table {table}: load failed, nothing changed: {exc}") from exc
    finally:
        cur.close()
    return loaded


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
    stage_ref: str,
    files: Sequence[str],
    file_format: str,
    partition: Partition,
    mode: str = "replace_partition",
) -> int:
    """Generate the load SQL and run it through the Airflow SnowflakeHook; return rows loaded."""
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

    columns = target_columns(schema, partition) if schema is not None else []
    statements = load_sql(table, columns, stage_ref, files, file_format, partition, mode)
    conn = SnowflakeHook(snowflake_conn_id=conn_id).get_conn()
    try:
        count = run_load(conn, table, schema, statements, partition)
    finally:
        conn.close()
    log.info("loaded %d row(s) into snowflake table %s (%s, %s)", count, table, partition.describe(), mode)
    return count
