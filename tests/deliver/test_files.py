"""Unit tests: globbing, reading json/parquet, partition columns."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from dag_factory.deliver.errors import DeliveryError
from dag_factory.deliver.files import list_local, match_glob, read_files, require_files
from dag_factory.deliver.partition import Partition, add_partition_columns
from tests.deliver.conftest import write_corrupt, write_json, write_parquet

DAY = dt.date(2026, 1, 5)


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("predictions/a.parquet", "predictions/*.parquet", True),
        ("predictions/sub/a.parquet", "predictions/*.parquet", False),
        ("x/predictions/a.parquet", "predictions/*.parquet", False),
        ("predictions/sub/a.parquet", "predictions/**/*.parquet", True),
        ("predictions/a.parquet", "predictions/**/*.parquet", True),
        ("metrics/m.json", "**/*.json", True),
        ("metrics/m.json", "metrics/?.json", True),
    ],
)
def test_match_glob(path: str, pattern: str, expected: bool) -> None:
    assert match_glob(path, pattern) is expected


def test_reads_json_array_and_json_lines_alike(outputs: Path) -> None:
    write_json(outputs, "m/a.json", [{"k": "a", "v": 1}, {"k": "b", "v": 2}])
    write_json(outputs, "m/b.json", [{"k": "c", "v": 3}], lines=True)
    table = read_files(list_local(str(outputs), "m/*.json"))
    assert table is not None
    assert table.to_pylist() == [{"k": "a", "v": 1}, {"k": "b", "v": 2}, {"k": "c", "v": 3}]


def test_files_are_read_in_sorted_order(outputs: Path) -> None:
    write_parquet(outputs, "p/2.parquet", [{"v": 2}])
    write_parquet(outputs, "p/1.parquet", [{"v": 1}])
    assert [f.relative for f in list_local(str(outputs), "p/*.parquet")] == ["p/1.parquet", "p/2.parquet"]


def test_corrupt_file_is_named(outputs: Path) -> None:
    write_corrupt(outputs, "p/bad.parquet")
    with pytest.raises(DeliveryError, match=r"p/bad.parquet: cannot read parquet file"):
        read_files(list_local(str(outputs), "p/*.parquet"))


def test_no_files_names_prefix_and_pattern(outputs: Path) -> None:
    with pytest.raises(DeliveryError, match=r"no files match 'p/\*.parquet' under .*outputs"):
        require_files([], str(outputs), "p/*.parquet", allow_empty=False)
    require_files([], str(outputs), "p/*.parquet", allow_empty=True)


def test_partition_columns_are_added() -> None:
    table = add_partition_columns(pa.table({"v": [1, 2]}), Partition(DAY, "country", "de"), "t")
    assert table.to_pylist() == [
        {"v": 1, "logical_date": DAY, "country": "de"},
        {"v": 2, "logical_date": DAY, "country": "de"},
    ]
    assert table.schema.field("logical_date").type == pa.date32()


def test_shared_partition_has_only_the_date() -> None:
    table = add_partition_columns(pa.table({"v": [1]}), Partition(DAY), "t")
    assert table.column_names == ["v", "logical_date"]


def test_carried_partition_column_must_match() -> None:
    same = add_partition_columns(
        pa.table({"country": ["de"], "v": [1]}), Partition(DAY, "country", "de"), "t"
    )
    assert same.to_pylist() == [{"v": 1, "logical_date": DAY, "country": "de"}]
    with pytest.raises(DeliveryError, match=r"column 'country' holds fr but this partition is country=de"):
        add_partition_columns(pa.table({"country": ["de", "fr"]}), Partition(DAY, "country", "de"), "t")


def test_partition_needs_column_and_value_together() -> None:
    with pytest.raises(DeliveryError, match="give both or neither"):
        Partition(DAY, "country", None)
