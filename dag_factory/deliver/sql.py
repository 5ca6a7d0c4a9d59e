"""SQL text helpers shared by the database targets: identifiers, literals, column checks."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from dag_factory.deliver.errors import DeliveryError
from dag_factory.deliver.partition import Partition

if TYPE_CHECKING:
    import pyarrow as pa

_NAME_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def split_table_name(table: str, kind: str = "table") -> list[str]:
    """Split ``schema.table`` (or ``db.schema.table``; a stage's name alike) into plain name parts."""
    parts = table.split(".")
    if not 1 <= len(parts) <= 3 or not all(_NAME_PART.match(p) for p in parts):
        raise DeliveryError(
            f"{kind} {table!r}: not a valid {kind} name: use letters, digits and _ as "
            f"[database.][schema.]{kind}"
        )
    return parts


def quote_ident(name: str) -> str:
    """Double-quote an identifier, doubling embedded quotes (safe for any column name)."""
    if not name or "\x00" in name:
        raise DeliveryError(f"column name {name!r} is empty or holds a NUL byte: rename it in the notebook")
    return '"' + name.replace('"', '""') + '"'


def quote_table(parts: list[str]) -> str:
    """Quoted dotted table name."""
    return ".".join(quote_ident(p) for p in parts)


def delete_partition(
    name: str, partition: Partition, placeholder: str
) -> tuple[str, list[dt.date | str | None]]:
    """`DELETE FROM name WHERE <partition columns> = <placeholder>...` and its parameter values."""
    where = " AND ".join(f"{quote_ident(c)} = {placeholder}" for c in partition.columns)
    values = [partition.logical_date, partition.value][: len(partition.columns)]
    return f"DELETE FROM {name} WHERE {where}", values


def check_columns(table: str, table_columns: list[str], file_columns: list[str]) -> None:
    """Fail when an existing table and the files (plus partition columns) have different column sets."""
    missing = [c for c in table_columns if c not in file_columns]
    extra = [c for c in file_columns if c not in table_columns]
    if missing or extra:
        raise DeliveryError(
            f"table {table}: columns do not match: missing in files: {', '.join(missing) or '-'}; "
            f"not in table: {', '.join(extra) or '-'} "
            f"(change the notebook output or migrate the table)"
        )


def prepare_table(
    table: str, existing: list[str] | None, schema: pa.Schema | None, create: Callable[[pa.Schema], object]
) -> bool:
    """Inside the load's transaction: create the table from the rows' schema, or check its columns
    against them. False when there is no table and no schema to create it from (an empty delivery)."""
    if existing is None and schema is None:
        return False
    if existing is None:
        assert schema is not None
        create(schema)
    elif schema is not None:
        check_columns(table, existing, schema.names)
    return True
