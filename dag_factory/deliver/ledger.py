"""The delivery ledger: which run delivered which partition into which table, written in the same
transaction as the rows, so that an append happens exactly once.

A deliver task can fail after its load committed (the acknowledgement lost, an XCom push that timed
out); Airflow retries it, and an append would add the same rows again. So every load into PostgreSQL,
DuckDB or Snowflake also writes one row into the ledger table ``_dag_factory_deliveries`` beside the
target table (same database and schema), in the load's own transaction::

    target_table     run_id                                partition_key                        mode
    ml.churn_scores  scheduled__2026-01-05T04:00:00+00:00  logical_date=2026-01-05, country=de  append
    (and try_number, rows_loaded, delivered_at)

Its key is (target table, run id, partition): what every try of one deliver task sees identically,
never the try number. In append mode a load whose key is there already loads nothing, logs "already
delivered by try N" and returns the rows that try loaded. replace_partition is idempotent by itself
(delete + insert) and only refreshes its row. Another run (a re-run of a date is a new run id) appends
again, as append means. Two tries of one task never run at once (Airflow), and PostgreSQL and DuckDB
serialise loads into one table anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dag_factory.deliver.partition import Partition, check_mode

log = logging.getLogger("dag_factory.deliver")

LEDGER_TABLE = "_dag_factory_deliveries"
KEY_COLUMNS = ("target_table", "run_id", "partition_key")
_COLUMNS = {
    "target_table": "VARCHAR NOT NULL",
    "run_id": "VARCHAR NOT NULL",
    "partition_key": "VARCHAR NOT NULL",
    "mode": "VARCHAR NOT NULL",
    "try_number": "INTEGER",
    "rows_loaded": "BIGINT NOT NULL",
    "delivered_at": "TIMESTAMPTZ NOT NULL",  # a type name PostgreSQL, DuckDB and Snowflake all know
}

Statement = tuple[str, list[Any]]


class Cursor(Protocol):
    """What the ledger needs of a DB-API cursor (or a DuckDB connection)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def fetchone(self) -> Any: ...


@dataclass(frozen=True)
class PartitionLoad:
    """One load of a run's partition into a target: what the ledger keys it by and records."""

    run_id: str
    partition: Partition
    mode: str = "replace_partition"
    try_number: int | None = None

    def __post_init__(self) -> None:
        check_mode(self.mode)


@dataclass(frozen=True)
class EarlierLoad:
    """The ledger row of a load that already committed."""

    try_number: int | None
    rows: int
    delivered_at: Any


def ledger_parts(table_parts: list[str]) -> list[str]:
    """The ledger's name parts: in the target table's database and schema."""
    return [*table_parts[:-1], LEDGER_TABLE]


@dataclass(frozen=True)
class LedgerSql:
    """The ledger's statements for one target table in one SQL dialect.

    ``name`` is the quoted ledger table, ``table`` the target table as the key records it, ``quote``
    the dialect's identifier quoting and ``placeholder`` its parameter marker.
    """

    name: str
    table: str
    quote: Callable[[str], str]
    placeholder: str

    def create(self) -> str:
        columns = [f"{self.quote(c)} {t}" for c, t in _COLUMNS.items()]
        key = ", ".join(self.quote(c) for c in KEY_COLUMNS)
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({', '.join(columns)}, PRIMARY KEY ({key}))"

    def lookup(self, load: PartitionLoad) -> Statement:
        sql = (
            f"SELECT {self.quote('try_number')}, {self.quote('rows_loaded')}, {self.quote('delivered_at')} "
            f"FROM {self.name} WHERE {self._key_condition()}"
        )
        return sql, self._key(load)

    def record(self, load: PartitionLoad, rows: int) -> list[Statement]:
        """Replace the key's row (there is none in append mode) with this load's."""
        columns = ", ".join(self.quote(c) for c in _COLUMNS)
        values = ", ".join([self.placeholder] * (len(_COLUMNS) - 1) + ["CURRENT_TIMESTAMP"])
        return [
            (f"DELETE FROM {self.name} WHERE {self._key_condition()}", self._key(load)),
            (
                f"INSERT INTO {self.name} ({columns}) VALUES ({values})",
                [*self._key(load), load.mode, load.try_number, rows],
            ),
        ]

    def _key_condition(self) -> str:
        return " AND ".join(f"{self.quote(c)} = {self.placeholder}" for c in KEY_COLUMNS)

    def _key(self, load: PartitionLoad) -> list[Any]:
        return [self.table, load.run_id, load.partition.describe()]


def load_once(
    cursor: Cursor,
    ledger: LedgerSql,
    load: PartitionLoad,
    delete: Callable[[], object],
    insert: Callable[[], int],
) -> int:
    """Inside the load's transaction, the table ready: skip an append the ledger already holds, else
    clear the partition (replace mode), insert, and record the load. Returns the rows delivered."""
    if load.mode == "append":
        earlier = _earlier_load(cursor, ledger, load)
        if earlier is not None:
            by = f"try {earlier.try_number}" if earlier.try_number is not None else "an earlier try"
            log.info(
                "table %s (%s): already delivered by %s of run %s at %s (%d row(s)): not appended again",
                ledger.table,
                load.partition.describe(),
                by,
                load.run_id,
                earlier.delivered_at,
                earlier.rows,
            )
            return earlier.rows
    else:
        delete()
    rows = insert()
    for sql, parameters in ledger.record(load, rows):
        cursor.execute(sql, parameters)
    return rows


def _earlier_load(cursor: Cursor, ledger: LedgerSql, load: PartitionLoad) -> EarlierLoad | None:
    sql, parameters = ledger.lookup(load)
    cursor.execute(sql, parameters)
    found: Sequence[Any] | None = cursor.fetchone()
    if found is None:
        return None
    try_number, rows, delivered_at = found
    return EarlierLoad(None if try_number is None else int(try_number), int(rows), delivered_at)
