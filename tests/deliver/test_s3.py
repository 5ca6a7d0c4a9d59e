"""S3 target and s3:// sources, against a real moto server."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dag_factory.deliver import DeliveryError, deliver, dispatch
from tests.deliver.outputs import write_corrupt, write_json, write_parquet
from tests.servers.moto import MotoServer

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 1, 5)
PART = "curated/churn/logical_date=2026-01-05/country=de/"


def _keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    answer = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in answer.get("Contents", []))


def _read_parquet(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return list(pq.read_table(io.BytesIO(body)).to_pylist())


@pytest.fixture
def s3(aws_env: MotoServer) -> Any:
    client = aws_env.client("s3")
    for bucket in ("warehouse", "outputs"):
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return client


def test_copy_counts_rows_and_lays_out_partitions(s3: Any, outputs: Path) -> None:
    write_parquet(outputs, "predictions/a.parquet", [{"v": 1}, {"v": 2}])
    write_json(outputs, "predictions/b.json", [{"v": 3}, {"v": 4}, {"v": 5}], lines=True)
    write_parquet(outputs, "other/skip.parquet", [{"v": 0}])
    target = {"to": "s3", "bucket": "warehouse", "prefix": "curated/churn", "files": "predictions/*"}
    assert deliver(target, str(outputs), DAY, "country", "de") == 5
    assert _keys(s3, "warehouse") == [PART + "predictions/a.parquet", PART + "predictions/b.json"]
    assert _read_parquet(s3, "warehouse", PART + "predictions/a.parquet") == [{"v": 1}, {"v": 2}]


def test_replace_removes_stale_objects_only_in_its_partition(s3: Any, tmp_path: Path) -> None:
    target = {"to": "s3", "bucket": "warehouse", "prefix": "curated/churn", "files": "predictions/*.parquet"}
    first, second, fr = tmp_path / "1", tmp_path / "2", tmp_path / "fr"
    write_parquet(first, "predictions/a.parquet", [{"v": 1}])
    write_parquet(first, "predictions/old.parquet", [{"v": 2}])
    write_parquet(fr, "predictions/a.parquet", [{"v": 9}])
    write_parquet(second, "predictions/a.parquet", [{"v": 10}, {"v": 11}])
    assert deliver(target, str(first), DAY, "country", "de") == 2
    assert deliver(target, str(fr), DAY, "country", "fr") == 1
    assert deliver(target, str(second), DAY, "country", "de") == 2
    fr_part = PART.replace("country=de", "country=fr")
    assert _keys(s3, "warehouse") == [PART + "predictions/a.parquet", fr_part + "predictions/a.parquet"]
    assert _read_parquet(s3, "warehouse", PART + "predictions/a.parquet") == [{"v": 10}, {"v": 11}]
    assert _read_parquet(s3, "warehouse", fr_part + "predictions/a.parquet") == [{"v": 9}]


def test_append_keeps_old_objects(s3: Any, tmp_path: Path) -> None:
    target = {
        "to": "s3",
        "bucket": "warehouse",
        "prefix": "curated/churn",
        "files": "**/*.parquet",
        "mode": "append",
    }
    write_parquet(tmp_path / "1", "a.parquet", [{"v": 1}])
    write_parquet(tmp_path / "2", "b.parquet", [{"v": 2}])
    deliver(target, str(tmp_path / "1"), DAY, "country", "de")
    deliver(target, str(tmp_path / "2"), DAY, "country", "de")
    assert _keys(s3, "warehouse") == [PART + "a.parquet", PART + "b.parquet"]


def test_corrupt_file_uploads_nothing(s3: Any, tmp_path: Path) -> None:
    target = {"to": "s3", "bucket": "warehouse", "prefix": "curated/churn", "files": "*.parquet"}
    write_parquet(tmp_path / "1", "a.parquet", [{"v": 1}])
    deliver(target, str(tmp_path / "1"), DAY, "country", "de")
    write_parquet(tmp_path / "2", "a.parquet", [{"v": 2}])
    write_corrupt(tmp_path / "2", "b.parquet")
    with pytest.raises(DeliveryError, match=r"b\.parquet: cannot read parquet footer"):
        deliver(target, str(tmp_path / "2"), DAY, "country", "de")
    assert _keys(s3, "warehouse") == [PART + "a.parquet"]
    assert _read_parquet(s3, "warehouse", PART + "a.parquet") == [{"v": 1}]


def test_allow_empty_empties_the_partition(s3: Any, tmp_path: Path) -> None:
    target = {"to": "s3", "bucket": "warehouse", "prefix": "curated/churn", "files": "*.parquet"}
    write_parquet(tmp_path / "1", "a.parquet", [{"v": 1}])
    deliver(target, str(tmp_path / "1"), DAY, "country", "de")
    (tmp_path / "2").mkdir()
    with pytest.raises(DeliveryError, match=r"no files match '\*.parquet'"):
        deliver(target, str(tmp_path / "2"), DAY, "country", "de")
    assert deliver({**target, "allow_empty": True}, str(tmp_path / "2"), DAY, "country", "de") == 0
    assert _keys(s3, "warehouse") == []


def test_s3_source_to_s3_target_shared_partition(s3: Any, tmp_path: Path) -> None:
    write_parquet(tmp_path, "a.parquet", [{"v": 1}, {"v": 2}])
    s3.upload_file(str(tmp_path / "a.parquet"), "outputs", "churn/run1/predictions/a.parquet")
    s3.upload_file(str(tmp_path / "a.parquet"), "outputs", "churn/run1/notebooks/x.parquet")
    target = {"to": "s3", "bucket": "outputs", "prefix": "curated", "files": "predictions/*.parquet"}
    assert deliver(target, "s3://outputs/churn/run1/", DAY, None, None) == 2
    assert _keys(s3, "outputs", "curated/") == ["curated/logical_date=2026-01-05/predictions/a.parquet"]


def test_s3_source_to_duckdb(s3: Any, tmp_path: Path) -> None:
    write_parquet(tmp_path, "a.parquet", [{"v": 1}, {"v": 2}])
    write_json(tmp_path, "b.json", [{"v": 3}])
    s3.upload_file(str(tmp_path / "a.parquet"), "outputs", "churn/run1/de/out/a.parquet")
    s3.upload_file(str(tmp_path / "b.json"), "outputs", "churn/run1/de/out/b.json")
    db = str(tmp_path / "w.duckdb")
    target = {"to": "duckdb", "path": db, "table": "scores", "files": "out/*"}
    assert deliver(target, "s3://outputs/churn/run1/de", DAY, "country", "de") == 3
    with duckdb.connect(db, read_only=True) as con:
        assert sorted(con.execute("SELECT * FROM scores").fetchall()) == [
            (1, DAY, "de"),
            (2, DAY, "de"),
            (3, DAY, "de"),
        ]


def test_missing_s3_source_names_the_prefix(s3: Any, tmp_path: Path) -> None:
    target = {"to": "duckdb", "path": str(tmp_path / "w.duckdb"), "table": "t", "files": "*.parquet"}
    with pytest.raises(DeliveryError, match=r"no files match '\*.parquet' under s3://outputs/nothing/"):
        deliver(target, "s3://outputs/nothing/", DAY, "country", "de")


@pytest.mark.parametrize(
    "relative",
    [
        "../../../tmp/dag-factory-escape/dags/x.json",
        "predictions/../../x.json",
        "predictions//x.json",
        "./x.json",
    ],
)
def test_a_key_that_escapes_the_prefix_is_refused(s3: Any, tmp_path: Path, relative: str) -> None:
    """Notebook code writes object keys; a key with '..' must never become a path outside the temp
    folder on the worker (a glob's `**` and `*` match such segments)."""
    escape = Path("/tmp/dag-factory-escape")
    s3.put_object(Bucket="outputs", Key="churn/run1/de/predictions/good.json", Body=b'[{"v": 1}]')
    s3.put_object(Bucket="outputs", Key=f"churn/run1/de/{relative}", Body=b'[{"v": 2}]')
    target = {"to": "duckdb", "path": str(tmp_path / "w.duckdb"), "table": "t", "files": "**/*.json"}
    with pytest.raises(DeliveryError) as info:
        deliver(target, "s3://outputs/churn/run1/de/", DAY, "country", "de")
    assert str(info.value) == (
        f"object key 'churn/run1/de/{relative}' under s3://outputs/churn/run1/de/ has '..', '.' or empty "
        "path segments, so it would be written outside the delivery's folder: refused; write output files "
        "under plain relative names"
    )
    assert not escape.exists()
    assert not (tmp_path / "w.duckdb").exists(), "nothing loaded"


def test_a_link_out_of_a_local_prefix_is_refused(outputs: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('[{"v": 1}]')
    (outputs / "predictions").mkdir()
    (outputs / "predictions" / "x.json").symlink_to(secret)
    target = {"to": "duckdb", "path": str(tmp_path / "w.duckdb"), "table": "t", "files": "**/*.json"}
    with pytest.raises(DeliveryError, match=r"is a link to .*secret\.json, outside the output prefix"):
        deliver(target, str(outputs), DAY, "country", "de")


def test_s3_outputs_are_copied_server_side(s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # outputs already in s3 are copied by s3 itself (in parts above 8 MB): neither downloaded nor
    # uploaded again; the row count comes from the parquet footer (a ranged read of its last bytes)
    rows = 1_200_000
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"v": range(rows)}), path, use_dictionary=False, compression="none")
    assert path.stat().st_size > 9 * 2**20
    s3.upload_file(str(path), "outputs", "churn/run1/de/predictions/big.parquet")
    calls: list[tuple[str, str | None]] = []  # (operation, key)
    fetched: list[int] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, params.get("Key")))

    def count(parsed: dict[str, Any], **_: Any) -> None:
        fetched.append(int(parsed.get("ContentLength", 0)))

    s3.meta.events.register("before-parameter-build.s3", record)
    s3.meta.events.register("after-call.s3.GetObject", count)
    monkeypatch.setattr(dispatch, "_s3_client", lambda _conn_id: s3)
    target = {"to": "s3", "bucket": "warehouse", "prefix": "curated/churn", "files": "predictions/*"}
    assert deliver(target, "s3://outputs/churn/run1/de/", DAY, "country", "de") == rows
    copied = s3.head_object(Bucket="warehouse", Key=PART + "predictions/big.parquet")
    assert copied["ContentLength"] == path.stat().st_size
    operations = {name for name, _ in calls}
    assert "UploadPartCopy" in operations and not {"PutObject", "UploadPart"} & operations, calls
    assert 0 < sum(fetched) < 100_000, f"fetched {sum(fetched)} bytes of a {path.stat().st_size}-byte file"
