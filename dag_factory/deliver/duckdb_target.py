"""Load rows into a DuckDB database file (the local warehouse)."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from dag_factory.deliver.errors import DeliveryError
from dag_factory.deliver.partition import Partition, add_partition_columns, check_mode
from dag_factory.deliver.sql import (
    delete_partition,
    prepare_partition,
    quote_table,
    split_table_name,
)

log = logging.getLogger("dag_factory.deliver")

LOCK_WAIT_SECONDS = 120.0


def load_duckdb(
    path: str, table: str, rows: pa.Table | None, partition: Partition, mode: str = "replace_partition"
) -> int:
    """Create the table if absent, then replace the partition's rows (or append) in one transaction.

    ``rows`` are the files' rows without partition columns; None means no files (an empty delivery).
    DuckDB lets one process at a time open a file for writing: parallel deliveries into the same file
    queue on a lock file beside it and so run one after another; another process holding the file is
    waited for up to LOCK_WAIT_SECONDS.
    """
    check_mode(mode)
    parts = split_table_name(table)
    if rows is not None:
        rows = add_partition_columns(rows, partition, table)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with _queued(path), _connect(path) as con:
        con.begin()
        try:
            count = _load(con, parts, table, rows, partition, mode)
        except Exception:
            con.rollback()
            raise
        con.commit()
    log.info(
        "loaded %d row(s) into duckdb %s table %s (%s, %s)", count, path, table, partition.describe(), mode
    )
    return count


@contextlib.contextmanager
def _queued(path: str) -> Iterator[None]:
    """Deliveries into one file take turns on a lock file: the next one starts the moment the previous
    one closed the database, instead of at its next retry (a local run's values deliver all at once)."""
    with open(f"{path}.deliver-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held for one load: ~50 ms
        yield


def _connect(path: str, wait_seconds: float = LOCK_WAIT_SECONDS) -> duckdb.DuckDBPyConnection:
    # another process (a duckdb shell, a query) may hold the file: duckdb lets one process write
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return duckdb.connect(path)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise DeliveryError(f"duckdb {path}: cannot open for writing: {exc}") from exc
            time.sleep(0.2)


def _load(
    con: duckdb.DuckDBPyConnection,
    parts: list[str],
    table: str,
    rows: pa.Table | None,
    partition: Partition,
    mode: str,
) -> int:
    name = quote_table(parts)
    create = functools.partial(_create_table, con, parts)
    delete = functools.partial(con.execute, *delete_partition(name, partition, "?"))
    if not prepare_partition(table, _table_columns(con, parts), rows, mode, create, delete):
        return 0
    assert rows is not None
    # registered views live as long as the connection, which load_duckdb closes
    con.register("_deliver_rows", rows)
    try:
        con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _deliver_rows")
    except duckdb.Error as exc:
        raise DeliveryError(f"table {table}: insert failed, nothing changed: {exc}") from exc
    return int(rows.num_rows)


def _table_columns(con: duckdb.DuckDBPyConnection, parts: list[str]) -> list[str] | None:
    schema = parts[-2] if len(parts) > 1 else "main"
    catalog_filter = "AND table_catalog = ?" if len(parts) == 3 else ""
    params = [schema, parts[-1]] + ([parts[0]] if len(parts) == 3 else [])
    found = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
        f"{catalog_filter} ORDER BY ordinal_position",
        params,
    ).fetchall()
    return [r[0] for r in found] or None


def _create_table(con: duckdb.DuckDBPyConnection, parts: list[str], rows: pa.Table) -> None:
    if len(parts) > 1:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_table(parts[:-1])}")
    con.register("_deliver_schema", rows.schema.empty_table())
    con.execute(f"CREATE TABLE {quote_table(parts)} AS SELECT * FROM _deliver_schema")
