"""A partition of a target table and the columns that mark its rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from dag_factory.deliver.errors import DeliveryError
from dag_factory.deliver.files import FileRows, conform

DATE_COLUMN = "logical_date"
MODES = ("replace_partition", "append")


@dataclass(frozen=True)
class Partition:
    """The rows of one run: one logical date and, unless isolation is shared, one fan-out value."""

    logical_date: dt.date
    column: str | None = None
    value: str | None = None

    def __post_init__(self) -> None:
        if (self.column is None) != (self.value is None):
            raise DeliveryError(
                f"partition column {self.column!r} and value {self.value!r}: give both or neither"
            )
        if self.column == DATE_COLUMN:
            raise DeliveryError(f"fan-out column may not be named {DATE_COLUMN!r}: rename the fan-out")

    @property
    def columns(self) -> list[str]:
        """Names of the columns that identify the partition, date first."""
        return [DATE_COLUMN] if self.column is None else [DATE_COLUMN, self.column]

    def describe(self) -> str:
        """Human-readable partition, for messages and logs."""
        text = f"{DATE_COLUMN}={self.logical_date.isoformat()}"
        return text if self.column is None else f"{text}, {self.column}={self.value}"


def check_mode(mode: str) -> str:
    """Return mode if known, else fail naming the choices."""
    if mode not in MODES:
        raise DeliveryError(f"unknown delivery mode {mode!r}: use one of {', '.join(MODES)}")
    return mode


Rows = TypeVar("Rows", pa.Table, pa.RecordBatch)


def _partition_values(partition: Partition) -> list[tuple[str, pa.Scalar]]:
    wanted: list[tuple[str, pa.Scalar]] = [(DATE_COLUMN, pa.scalar(partition.logical_date, pa.date32()))]
    if partition.column is not None:
        wanted.append((partition.column, pa.scalar(partition.value, pa.string())))
    return wanted


def add_partition_columns(rows: Rows, partition: Partition, source: str) -> Rows:
    """Append the partition columns; a column the files already carry must hold the partition's value."""
    for name, scalar in _partition_values(partition):
        if name in rows.column_names:
            _check_column_value(rows, name, scalar, source)
            rows = rows.drop_columns([name])
        rows = rows.append_column(name, pa.repeat(scalar, rows.num_rows))
    return rows


def partition_schema(schema: pa.Schema, partition: Partition) -> pa.Schema:
    """The table's columns: the files' (less any partition column they carry), then the partition's."""
    kept = [f for f in schema if f.name not in partition.columns]
    return pa.schema(kept + [pa.field(n, s.type) for n, s in _partition_values(partition)])


def partition_batches(rows: FileRows, partition: Partition, source: str) -> Iterator[pa.RecordBatch]:
    """The files' rows a batch at a time, with the partition columns, all in ``partition_schema``."""
    schema = partition_schema(rows.schema, partition)
    for batch in rows.batches():
        yield conform(add_partition_columns(batch, partition, source), schema)


def check_partition_values(rows: FileRows, partition: Partition, source: str) -> None:
    """Check the partition columns the files carry without loading them (reads those columns only)."""
    carried = [c for c in partition.columns if c in rows.schema.names]
    if carried:
        for batch in rows.batches(carried):
            add_partition_columns(batch, partition, source)


def _check_column_value(rows: pa.Table | pa.RecordBatch, name: str, scalar: pa.Scalar, source: str) -> None:
    # files may carry the partition column themselves; a different value means a mixed-up output prefix
    try:
        column = pc.cast(rows.column(name), scalar.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DeliveryError(f"{source}: column {name!r} cannot be read as {scalar.type}: {exc}") from exc
    bad = pc.unique(pc.filter(column, pc.invert(pc.equal(column, scalar)))).to_pylist()
    nulls = column.null_count
    if bad or nulls:
        shown = ", ".join(str(v) for v in bad[:5]) + (" and nulls" if nulls else "")
        raise DeliveryError(
            f"{source}: column {name!r} holds {shown} but this partition is {name}={scalar.as_py()}: "
            f"drop the column from the notebook output or write only this partition's rows"
        )
