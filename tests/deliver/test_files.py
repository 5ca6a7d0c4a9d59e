"""Unit tests: globbing, reading json/parquet a batch at a time, partition columns."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dag_factory.deliver import files
from dag_factory.deliver.errors import DeliveryError
from dag_factory.deliver.files import FileRows, conform, list_local, match_glob, open_rows, require_files
from dag_factory.deliver.partition import Partition, add_partition_columns, partition_batches
from tests.deliver.outputs import write_corrupt, write_json, write_parquet

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


def _all_rows(rows: FileRows | None) -> list[dict[str, object]]:
    assert rows is not None
    return pa.Table.from_batches([conform(b, rows.schema) for b in rows.batches()], rows.schema).to_pylist()


def test_reads_json_array_and_json_lines_alike(outputs: Path) -> None:
    write_json(outputs, "m/a.json", [{"k": "a", "v": 1}, {"k": "b", "v": 2}])
    write_json(outputs, "m/b.json", [{"k": "c", "v": 3}], lines=True)
    rows = open_rows(list_local(str(outputs), "m/*.json"))
    assert _all_rows(rows) == [{"k": "a", "v": 1}, {"k": "b", "v": 2}, {"k": "c", "v": 3}]


def test_a_column_some_files_lack_reads_as_nulls(outputs: Path) -> None:
    write_parquet(outputs, "p/1.parquet", [{"v": 1, "note": None}])
    write_parquet(outputs, "p/2.parquet", [{"v": 2, "note": "x"}])
    write_parquet(outputs, "p/3.parquet", [{"v": 3}])
    rows = open_rows(list_local(str(outputs), "p/*.parquet"))
    assert rows is not None and rows.schema == pa.schema([("v", pa.int64()), ("note", pa.string())])
    assert _all_rows(rows) == [{"v": 1, "note": None}, {"v": 2, "note": "x"}, {"v": 3, "note": None}]


def test_files_of_different_schemas_are_named(outputs: Path) -> None:
    write_parquet(outputs, "p/1.parquet", [{"v": 1}])
    write_parquet(outputs, "p/2.parquet", [{"v": "one"}])
    with pytest.raises(DeliveryError) as info:
        open_rows(list_local(str(outputs), "p/*.parquet"))
    assert str(info.value).startswith("files do not share one schema (")
    assert str(info.value).endswith("): p/1.parquet: v int64; p/2.parquet: v string")


def test_rows_are_read_a_batch_at_a_time(outputs: Path) -> None:
    # what keeps a delivery's memory bounded: the schema comes from the footers alone, and the rows a
    # batch of at most BATCH_ROWS at a time, file after file
    (outputs / "p").mkdir()
    for name in ("1", "2"):
        table = pa.table({"v": range(2 * files.BATCH_ROWS + 5)})
        pq.write_table(table, outputs / "p" / f"{name}.parquet", row_group_size=files.BATCH_ROWS // 2)
    rows = open_rows(list_local(str(outputs), "p/*.parquet"))
    assert rows is not None
    batches = list(partition_batches(rows, Partition(DAY, "country", "de"), "t"))
    assert [b.num_rows for b in batches] == [files.BATCH_ROWS, files.BATCH_ROWS, 5] * 2
    expected = [("v", pa.int64()), ("logical_date", pa.date32()), ("country", pa.string())]
    assert batches[0].schema == pa.schema(expected)
    assert batches[-1].to_pylist()[-1] == {
        "v": 2 * files.BATCH_ROWS + 4,
        "logical_date": DAY,
        "country": "de",
    }


def test_files_are_read_in_sorted_order(outputs: Path) -> None:
    write_parquet(outputs, "p/2.parquet", [{"v": 2}])
    write_parquet(outputs, "p/1.parquet", [{"v": 1}])
    assert [f.relative for f in list_local(str(outputs), "p/*.parquet")] == ["p/1.parquet", "p/2.parquet"]


def test_corrupt_file_is_named(outputs: Path) -> None:
    write_corrupt(outputs, "p/bad.parquet")
    with pytest.raises(DeliveryError, match=r"p/bad.parquet: cannot read parquet file"):
        open_rows(list_local(str(outputs), "p/*.parquet"))


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
