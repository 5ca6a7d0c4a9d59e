"""Snowflake: the generated SQL as golden strings, and real runs on fakesnow.

fakesnow 0.12.1 runs COPY INTO with a transformation from parquet files, with FILES, from a stage whose
URL is a ``file://`` directory; it keeps Snowflake's load history (a file loaded before is skipped unless
FORCE = TRUE). The runs here deliver from an s3 output prefix in moto, as production does, and the
stage is over a local copy of that bucket (fakesnow reads no s3). fakesnow accepts some SQL that
Snowflake refuses (an unquoted stage path with ``:`` and ``+``), so the golden strings are the check of
the quoting. It cannot run ``$1:"col"`` transformations on JSON files: golden SQL only.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fakesnow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import snowflake.connector

from dag_factory.deliver import DeliveryError, Partition, deliver, dispatch
from dag_factory.deliver.ledger import PartitionLoad
from dag_factory.deliver.snowflake_target import (
    copy_sql,
    create_table_sql,
    delete_sql,
    ledger_sql,
    load_snowflake,
    stage_reference,
)
from tests.deliver.outputs import delivery_logs, write_parquet
from tests.servers.moto import REGION, MotoServer

DAY = dt.date(2026, 1, 5)
DE = Partition(DAY, "country", "de")
COLUMNS = [("customer_id", "NUMBER(38,0)"), ("score", "FLOAT")]
RUN = "scheduled__2026-01-05T04:00:00+00:00"
KEYS = [
    f"churn-model/{RUN}/de/predictions/part-0.parquet",
    f"churn-model/{RUN}/de/predictions/part-1.parquet",
]


def test_create_table_sql() -> None:
    assert create_table_sql("ml.churn_scores", COLUMNS, DE) == (
        'CREATE TABLE IF NOT EXISTS "ML"."CHURN_SCORES" '
        '("CUSTOMER_ID" NUMBER(38,0), "SCORE" FLOAT, "LOGICAL_DATE" DATE, "COUNTRY" VARCHAR)'
    )


def test_replace_sql_forces_the_copy_after_the_delete() -> None:
    assert delete_sql("ml.churn_scores", DE) == (
        'DELETE FROM "ML"."CHURN_SCORES" WHERE "LOGICAL_DATE" = \'2026-01-05\'::DATE AND "COUNTRY" = \'de\''
    )
    assert copy_sql("ml.churn_scores", COLUMNS, "ML.OUTPUTS", KEYS, "parquet", DE) == (
        'COPY INTO "ML"."CHURN_SCORES" ("CUSTOMER_ID", "SCORE", "LOGICAL_DATE", "COUNTRY") '
        "FROM (SELECT $1:\"customer_id\"::NUMBER(38,0), $1:\"score\"::FLOAT, '2026-01-05'::DATE, 'de' "
        'FROM @"ML"."OUTPUTS") '
        f"FILES = ('churn-model/{RUN}/de/predictions/part-0.parquet', "
        f"'churn-model/{RUN}/de/predictions/part-1.parquet') "
        "FILE_FORMAT = (TYPE = PARQUET) FORCE = TRUE"
    )


def test_append_sql_keeps_the_load_history() -> None:
    columns = [("name", "VARCHAR"), ("Mixed Case", "FLOAT")]
    assert copy_sql("METRICS", columns, "@OUT", ["m/a.json"], "json", Partition(DAY), mode="append") == (
        'COPY INTO "METRICS" ("NAME", "Mixed Case", "LOGICAL_DATE") '
        'FROM (SELECT $1:"name"::VARCHAR, $1:"Mixed Case"::FLOAT, \'2026-01-05\'::DATE FROM @"OUT") '
        "FILES = ('m/a.json') FILE_FORMAT = (TYPE = JSON STRIP_OUTER_ARRAY = TRUE)"
    )


def test_reserved_words_are_quoted() -> None:
    group = Partition(DAY, "group", "a")
    columns = [("values", "FLOAT"), ("start", "NUMBER(38,0)")]
    assert create_table_sql("ml.order", columns, group) == (
        'CREATE TABLE IF NOT EXISTS "ML"."ORDER" ("VALUES" FLOAT, "START" NUMBER(38,0), '
        '"LOGICAL_DATE" DATE, "GROUP" VARCHAR)'
    )
    assert delete_sql("ml.order", group) == (
        'DELETE FROM "ML"."ORDER" WHERE "LOGICAL_DATE" = \'2026-01-05\'::DATE AND "GROUP" = \'a\''
    )
    assert copy_sql("ml.order", columns, "ML.OUTPUTS", ["x/a.parquet"], "parquet", group).startswith(
        'COPY INTO "ML"."ORDER" ("VALUES", "START", "LOGICAL_DATE", "GROUP") '
        "FROM (SELECT $1:\"values\"::FLOAT, $1:\"start\"::NUMBER(38,0), '2026-01-05'::DATE, 'a' "
    )


def test_values_and_paths_are_escaped() -> None:
    partition = Partition(DAY, "country", "d'e\\")
    assert delete_sql("ML.T", partition) == (
        'DELETE FROM "ML"."T" WHERE "LOGICAL_DATE" = \'2026-01-05\'::DATE AND "COUNTRY" = \'d\\\'e\\\\\''
    )
    assert "FILES = ('run/it\\'s.parquet')" in copy_sql(
        "T", COLUMNS, "S", ["run/it's.parquet"], "parquet", partition
    )


def test_ledger_sql() -> None:
    ledger = ledger_sql("ml.churn_scores")
    assert ledger.create() == (
        'CREATE TABLE IF NOT EXISTS "ML"."_DAG_FACTORY_DELIVERIES" ("TARGET_TABLE" VARCHAR NOT NULL, '
        '"RUN_ID" VARCHAR NOT NULL, "PARTITION_KEY" VARCHAR NOT NULL, "MODE" VARCHAR NOT NULL, '
        '"TRY_NUMBER" INTEGER, "ROWS_LOADED" BIGINT NOT NULL, "DELIVERED_AT" TIMESTAMPTZ NOT NULL, '
        'PRIMARY KEY ("TARGET_TABLE", "RUN_ID", "PARTITION_KEY"))'
    )
    load = PartitionLoad(RUN, DE, "append", 2)
    key = ["ML.CHURN_SCORES", RUN, "logical_date=2026-01-05, country=de"]
    where = '"TARGET_TABLE" = %s AND "RUN_ID" = %s AND "PARTITION_KEY" = %s'
    assert ledger.lookup(load) == (
        'SELECT "TRY_NUMBER", "ROWS_LOADED", "DELIVERED_AT" '
        f'FROM "ML"."_DAG_FACTORY_DELIVERIES" WHERE {where}',
        key,
    )
    assert ledger.record(load, 3) == [
        (f'DELETE FROM "ML"."_DAG_FACTORY_DELIVERIES" WHERE {where}', key),
        (
            'INSERT INTO "ML"."_DAG_FACTORY_DELIVERIES" ("TARGET_TABLE", "RUN_ID", "PARTITION_KEY", "MODE", '
            '"TRY_NUMBER", "ROWS_LOADED", "DELIVERED_AT") VALUES (%s, %s, %s, %s, %s, %s, CURRENT_TIMESTAMP)',
            [*key, "append", 2, 3],
        ),
    ]


@pytest.mark.parametrize(
    ("stage", "expected"),
    [("ML.OUTPUTS", '@"ML"."OUTPUTS"'), ("@db.ml.outputs", '@"DB"."ML"."OUTPUTS"'), ("S", '@"S"')],
)
def test_stage_reference(stage: str, expected: str) -> None:
    assert stage_reference(stage) == expected


def test_a_bad_stage_name_is_refused() -> None:
    with pytest.raises(DeliveryError) as info:
        stage_reference("ML.OUTPUTS/churn")
    assert str(info.value) == (
        "stage 'ML.OUTPUTS/churn': not a valid stage name: use letters, digits and _ as "
        "[database.][schema.]stage"
    )


def test_too_many_files_is_refused() -> None:
    with pytest.raises(DeliveryError) as info:
        copy_sql("T", COLUMNS, "S", [f"f{i}.parquet" for i in range(1001)], "parquet", DE)
    assert str(info.value) == (
        "table T: 1001 files match, but a snowflake COPY takes at most 1000: write fewer, larger files"
    )


# --- runs on fakesnow, through deliver() and the Airflow SnowflakeHook ---------------------------------


@dataclass
class Snow:
    """The fakesnow connection, the moto s3 client and the local copy of the output bucket."""

    conn: Any
    s3: Any
    bucket: Path

    def item(self, run: str, value: str, rows: list[dict[str, Any]], files: int = 2) -> str:
        """Write a value's output files into the bucket (s3 and its local copy); return its s3 prefix."""
        prefix = f"churn-model/{run}/{value}"
        for i in range(files):
            path = write_parquet(self.bucket / prefix, f"predictions/part-{i}.parquet", rows[i::files])
            self.s3.upload_file(str(path), "outputs", f"{prefix}/predictions/part-{i}.parquet")
        return f"s3://outputs/{prefix}"

    def rows(self, table: str = "ML.CHURN_SCORES") -> list[tuple[Any, ...]]:
        return sorted(self.conn.cursor().execute(f"SELECT * FROM {table}").fetchall())

    def ledger(self) -> list[tuple[Any, ...]]:
        """The ledger's rows without their time stamp."""
        return [r[:-1] for r in self.rows("ML._DAG_FACTORY_DELIVERIES")]


@pytest.fixture
def snow(aws_env: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Snow]:
    """fakesnow in place of snowflake.connector, the output bucket in moto, a stage over its local copy."""
    s3 = aws_env.client("s3")
    s3.create_bucket(Bucket="outputs", CreateBucketConfiguration={"LocationConstraint": REGION})
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    conn_json = {
        "conn_type": "snowflake",
        "login": "u",
        "password": "p",
        "schema": "ML",
        "extra": {"account": "acc", "database": "DB1", "warehouse": "WH"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SNOW_TEST", json.dumps(conn_json))
    with fakesnow.patch():
        conn = snowflake.connector.connect(database="DB1", schema="ML")
        conn.cursor().execute(f"CREATE STAGE OUTPUTS URL = 'file://{bucket}/'")
        yield Snow(conn, s3, bucket)
        conn.close()


def _target(**extra: Any) -> dict[str, Any]:
    return {
        "to": "snowflake",
        "table": "ML.CHURN_SCORES",
        "stage": "OUTPUTS",
        "files": "predictions/*.parquet",
        **extra,
    }


SCORES = [{"customer_id": i, "score": i / 4} for i in range(1, 4)]


def _expected(rows: list[dict[str, Any]], value: str) -> list[tuple[Any, ...]]:
    return sorted((r["customer_id"], r["score"], DAY, value) for r in rows)


def _deliver(target: dict[str, Any], prefix: str, value: str, **run: Any) -> int:
    return deliver(target, prefix, DAY, "country", value, snowflake_conn_id="snow_test", **run)


@pytest.mark.integration
def test_fakesnow_load_rerun_and_side_by_side(snow: Snow) -> None:
    de, fr = snow.item(RUN, "de", SCORES), snow.item(RUN, "fr", SCORES[:1], files=1)
    assert _deliver(_target(), de, "de") == 3
    assert _deliver(_target(), de, "de") == 3  # FORCE: the files load again after the delete
    assert _deliver(_target(), fr, "fr") == 1
    assert snow.rows() == sorted(_expected(SCORES, "de") + _expected(SCORES[:1], "fr"))
    rerun = snow.item("manual__2026-01-06T10:00:00+00:00", "fr", SCORES[:1], files=1)
    assert _deliver(_target(mode="append"), rerun, "fr") == 1
    assert snow.rows() == sorted(_expected(SCORES, "de") + _expected(SCORES[:1], "fr") * 2)


@pytest.mark.integration
def test_append_retry_after_commit_delivers_once(snow: Snow) -> None:
    # try 1 committed, then the task failed; try 2 of the same run must not append the rows again
    de = snow.item(RUN, "de", SCORES)
    assert _deliver(_target(mode="append"), de, "de", run_id=RUN, try_number=1) == 3
    with delivery_logs() as messages:
        assert _deliver(_target(mode="append"), de, "de", run_id=RUN, try_number=2) == 3
    assert snow.rows() == _expected(SCORES, "de")
    assert [m for m in messages if "already delivered by try 1" in m] != [], messages
    assert snow.ledger() == [("ML.CHURN_SCORES", RUN, "logical_date=2026-01-05, country=de", "append", 1, 3)]


@pytest.mark.integration
def test_fakesnow_reserved_words_and_a_real_run_id(snow: Snow) -> None:
    rows = [{"values": 1.5, "start": 1}, {"values": 2.5, "start": 2}]
    prefix = snow.item(RUN, "a", rows)
    target = _target(table="ML.ORDER")
    assert deliver(target, prefix, DAY, "group", "a", run_id=RUN, snowflake_conn_id="snow_test") == 2
    assert snow.rows("ML.ORDER") == [(1.5, 1, DAY, "a"), (2.5, 2, DAY, "a")]


@pytest.mark.integration
def test_fakesnow_failed_copy_rolls_back_the_delete(snow: Snow) -> None:
    _deliver(_target(), snow.item(RUN, "de", SCORES), "de")
    schema = pa.schema([("customer_id", pa.int64()), ("score", pa.float64())])
    write_parquet(snow.bucket / "bad", "part-0.parquet", [{"customer_id": 9, "score": 0.9}], schema)
    # the COPY reads a file that is not parquet after the DELETE ran: the DELETE must be undone
    (snow.bucket / "bad" / "part-1.parquet").write_bytes(b"PAR1 junk")
    # (deliver() would refuse the file before SQL runs, so call the loader that runs the SQL)
    files = ["bad/part-0.parquet", "bad/part-1.parquet"]
    with pytest.raises(DeliveryError, match=r"table ML\.CHURN_SCORES: load failed, nothing changed"):
        load_snowflake(
            "snow_test", "ML.CHURN_SCORES", schema, "OUTPUTS", files, "parquet", PartitionLoad(RUN, DE)
        )
    assert snow.rows() == _expected(SCORES, "de")


@pytest.mark.integration
def test_fakesnow_column_mismatch(snow: Snow) -> None:
    _deliver(_target(), snow.item(RUN, "de", SCORES), "de")
    other = snow.item("manual__2", "de", [{"customer_id": 1, "proba": 0.5}], files=1)
    with pytest.raises(DeliveryError, match="missing in files: SCORE; not in table: PROBA"):
        _deliver(_target(), other, "de")
    assert snow.rows() == _expected(SCORES, "de")


@pytest.mark.integration
def test_snowflake_reads_only_the_files_footers(snow: Snow, monkeypatch: pytest.MonkeyPatch) -> None:
    # Snowflake reads the rows itself, from the stage: the worker needs the files' schema, which a
    # parquet footer holds. Count the bytes the delivery fetches from s3.
    prefix = "churn-model/big/de"
    path = snow.bucket / prefix / "predictions" / "part-0.parquet"
    path.parent.mkdir(parents=True)
    rows = pa.table({"customer_id": pa.array(range(400_000)), "score": pa.array([0.5] * 400_000)})
    pq.write_table(rows, path, row_group_size=100_000, compression="none", use_dictionary=False)
    snow.s3.upload_file(str(path), "outputs", f"{prefix}/predictions/part-0.parquet")
    fetched: list[int] = []

    def count(parsed: dict[str, Any], **_: Any) -> None:
        fetched.append(int(parsed.get("ContentLength", 0)))

    snow.s3.meta.events.register("after-call.s3.GetObject", count)
    monkeypatch.setattr(dispatch, "_s3_client", lambda _conn_id: snow.s3)
    assert _deliver(_target(), f"s3://outputs/{prefix}", "de") == 400_000
    size = path.stat().st_size
    assert size > 6_000_000
    assert 0 < sum(fetched) < 100_000, f"fetched {sum(fetched)} of a {size}-byte file in {len(fetched)} GETs"
