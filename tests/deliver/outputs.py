"""Helpers for delivery tests: write notebook-like output files, and hear what the delivery stage logs."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def write_parquet(
    root: Path, relative: str, rows: list[dict[str, Any]], schema: pa.Schema | None = None
) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def write_json(root: Path, relative: str, rows: list[dict[str, Any]], lines: bool = False) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows) if lines else json.dumps(rows)
    path.write_text(text)
    return path


def write_corrupt(root: Path, relative: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PAR1 this is not parquet")
    return path


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def delivery_logs() -> Iterator[list[str]]:
    """The delivery stage's log messages while the block runs.

    Our own handler: importing airflow reconfigures logging, so caplog may not see the records.
    """
    records, logger = _Records(), logging.getLogger("dag_factory.deliver")
    logger.addHandler(records)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield records.messages
    finally:
        logger.removeHandler(records)
        logger.setLevel(old_level)
