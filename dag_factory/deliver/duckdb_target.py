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
from dag_factory.spec.job import DuckDBDelivery

log = logging.getLogger("dag_factory.deliver")

LOCK_WAIT_SECONDS = 120.0
# a delivery streams rows into a table, and DuckDB writes each full row group to the file: without a
# limit it keeps them cached, up to 80% of the machine's memory; above it, it spills to <file>.tmp
MEMORY_LIMIT = "128MB"


def load_duckdb(path: str, table: str, rows: FileRows | None, load: PartitionLoad) -> int:
    """Create the table if absent, then replace the partition's rows (or append them, once) and write
    the ledger row (dag_factory.deliver.ledger), in one transaction.

    ``rows`` are the files' rows without partition columns, streamed in a batch at a time; None means
    no files (an empty load). DuckDB lets one process at a time open a file for writing: parallel
    deliveries into the same file queue on a lock file beside it and so run one after another; another
    process holding the file is waited for up to LOCK_WAIT_SECONDS.
    """
    parts = split_table_name(table)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with _queued(path), _connect(path) as con:
        con.begin()
        try:
            count = _load(con, parts, table, rows, load)
        except Exception:
            con.rollback()
            raise
        con.commit()
    log.info(
        "loaded %d row(s) into duckdb %s table %s (%s, %s)",
        count,
        path,
        table,
        load.partition.describe(),
        load.mode,
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
            # one thread: each of DuckDB's scan threads pulls batches of its own ahead of the insert,
            # so the peak grew with the threads and with how busy the machine was (360-680 MB measured)
            return duckdb.connect(path, config={"memory_limit": MEMORY_LIMIT, "threads": 1})
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise DeliveryError(f"duckdb {path}: cannot open for writing: {exc}") from exc
            time.sleep(0.2)


def _load(
    con: duckdb.DuckDBPyConnection, parts: list[str], table: str, rows: FileRows | None, load: PartitionLoad
) -> int:
    schema = None if rows is None else partition_schema(rows.schema, load.partition)
    create = functools.partial(_create_table, con, parts)
    if not prepare_table(table, _table_columns(con, parts), schema, create):
        return 0
    ledger = LedgerSql(quote_table(ledger_parts(parts)), ".".join(parts), quote_ident, "?")
    con.execute(ledger.create())
    name = quote_table(parts)
    delete = functools.partial(con.execute, *delete_partition(name, load.partition, "?"))
    insert = functools.partial(_insert, con, name, table, rows, load.partition)
    return load_once(con, ledger, load, delete, insert)


class _Batches:
    """The batches DuckDB pulls, keeping the error that stopped them: DuckDB reports it as its own."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self._batches = batches
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._batches
        except Exception as exc:
            self.error = exc
            raise


def _insert(
    con: duckdb.DuckDBPyConnection, name: str, table: str, rows: FileRows | None, partition: Partition
) -> int:
    if rows is None:
        return 0
    batches = _Batches(partition_batches(rows, partition, table))
    # a reader, not a table: DuckDB pulls one batch at a time, so the files never sit in memory whole
    reader = pa.RecordBatchReader.from_batches(partition_schema(rows.schema, partition), iter(batches))
    con.register("_deliver_rows", reader)  # lives as long as the connection, which load_duckdb closes
    try:
        inserted = con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _deliver_rows").fetchone()
    except Exception as exc:
        if batches.error is not None:
            raise batches.error from None
        raise DeliveryError(f"table {table}: insert failed, nothing changed: {exc}") from exc
    return int(inserted[0]) if inserted else 0


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


def _create_table(con: duckdb.DuckDBPyConnection, parts: list[str], schema: pa.Schema) -> None:
    if len(parts) > 1:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_table(parts[:-1])}")
    con.register("_deliver_schema", schema.empty_table())
    con.execute(f"CREATE TABLE {quote_table(parts)} AS SELECT * FROM _deliver_schema")


def deliver_to(target: DuckDBDelivery, batch: Batch) -> int:
    """The dispatcher's entry: load the batch into the target's table in its DuckDB file."""
    if target.path is None:
        raise DeliveryError("deliver target duckdb: missing keys: path (the plan names the database file)")
    return load_duckdb(target.path, target.table, open_rows(batch.files), batch.load)
