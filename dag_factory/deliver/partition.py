"""A partition of a target table and the columns that mark its rows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from dag_factory.deliver.errors import DeliveryError

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


def add_partition_columns(table: pa.Table, partition: Partition, source: str) -> pa.Table:
    """Append the partition columns; a column the files already carry must hold the partition's value."""
    wanted: list[tuple[str, pa.Scalar]] = [(DATE_COLUMN, pa.scalar(partition.logical_date, pa.date32()))]
    if partition.column is not None:
        wanted.append((partition.column, pa.scalar(partition.value, pa.string())))
    for name, scalar in wanted:
        if name in table.column_names:
            _check_column_value(table, name, scalar, source)
            table = table.drop_columns([name])
        table = table.append_column(name, pa.array([scalar.as_py()] * table.num_rows, scalar.type))
    return table


def _check_column_value(table: pa.Table, name: str, scalar: pa.Scalar, source: str) -> None:
    # files may carry the partition column themselves; a different value means a mixed-up output prefix
    try:
        column = pc.cast(table.column(name), scalar.type)
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
