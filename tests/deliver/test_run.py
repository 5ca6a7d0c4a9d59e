"""The dispatcher's own checks: target dicts and arguments."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dag_factory.deliver import DeliveryError, Partition, deliver
from dag_factory.deliver.dispatch import s3_target_url


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"to": "bigquery", "files": "*"}, "unknown target: use one of duckdb, postgres, s3, snowflake"),
        ({"to": "duckdb", "files": "*", "table": "t"}, "missing keys: path"),
        ({"to": "postgres", "files": "*", "table": "t", "tabel": "x"}, "unknown keys: tabel"),
        (
            {"to": "duckdb", "path": "x", "table": "t", "files": "*", "mode": "upsert"},
            "unknown delivery mode",
        ),
    ],
)
def test_bad_targets(target: dict[str, object], message: str, tmp_path: Path) -> None:
    with pytest.raises(DeliveryError, match=message):
        deliver(target, str(tmp_path), dt.date(2026, 1, 5), "country", "de")


def test_bad_logical_date(tmp_path: Path) -> None:
    target = {"to": "duckdb", "path": "x", "table": "t", "files": "*"}
    with pytest.raises(DeliveryError, match="not an ISO date"):
        deliver(target, str(tmp_path), "tomorrow", "country", "de")


def test_snowflake_needs_an_s3_source(tmp_path: Path) -> None:
    (tmp_path / "a.parquet").write_bytes(b"")
    target = {"to": "snowflake", "table": "T", "stage": "S", "files": "*.json", "allow_empty": True}
    with pytest.raises(DeliveryError, match="deliver from an s3 output prefix"):
        deliver(target, str(tmp_path), dt.date(2026, 1, 5), "country", "de")


@pytest.mark.parametrize(
    ("target", "source", "expected"),
    [
        ({"prefix": "curated/x"}, "s3://out/run/", "s3://out/curated/x/logical_date=2026-01-05/country=de/"),
        ({"prefix": "/c/", "bucket": "wh"}, "/tmp/x", "s3://wh/c/logical_date=2026-01-05/country=de/"),
        ({"prefix": "s3://wh/c"}, "/tmp/x", "s3://wh/c/logical_date=2026-01-05/country=de/"),
    ],
)
def test_s3_target_url(target: dict[str, str], source: str, expected: str) -> None:
    partition = Partition(dt.date(2026, 1, 5), "country", "de")
    assert s3_target_url(target, source, partition) == expected


def test_s3_target_needs_a_bucket() -> None:
    with pytest.raises(DeliveryError, match="no bucket"):
        s3_target_url({"prefix": "c"}, "/tmp/x", Partition(dt.date(2026, 1, 5)))
