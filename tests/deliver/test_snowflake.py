"""Snowflake: the generated SQL as golden strings, and real runs on fakesnow.

fakesnow 0.12.1 runs COPY INTO with a transformation from parquet files, with FILES, from a stage whose
URL is a ``file://`` directory (standing in for the external stage over the output bucket). It cannot
run: FILES with an internal stage (it rejects the internal path as "invalid URL prefix"), and
``$1:"col"`` transformations on JSON files. Those are covered by the golden SQL only.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakesnow
import pyarrow as pa
import pytest
import snowflake.connector

from dag_factory.deliver import DeliveryError, Partition, deliver, dispatch
from dag_factory.deliver.snowflake_target import create_table_sql, load_snowflake, load_sql
from tests.deliver.conftest import write_parquet

DAY = dt.date(2026, 1, 5)
DE = Partition(DAY, "country", "de")
COLUMNS = [("customer_id", "NUMBER(38,0)"), ("score", "FLOAT")]


def test_replace_sql() -> None:
    files = ["predictions/part-0.parquet", "predictions/part-1.parquet"]
    assert load_sql(
        "ml.churn_scores", COLUMNS, "@ML.OUTPUTS/churn-model/2026-01-05/de", files, "parquet", DE
    ) == [
        "BEGIN",
        "DELETE FROM ML.CHURN_SCORES WHERE LOGICAL_DATE = '2026-01-05'::DATE AND COUNTRY = 'de'",
        "COPY INTO ML.CHURN_SCORES (CUSTOMER_ID, SCORE, LOGICAL_DATE, COUNTRY) "
        "FROM (SELECT $1:\"customer_id\"::NUMBER(38,0), $1:\"score\"::FLOAT, '2026-01-05'::DATE, 'de' "
        "FROM @ML.OUTPUTS/churn-model/2026-01-05/de/) "
        "FILES = ('predictions/part-0.parquet', 'predictions/part-1.parquet') "
        "FILE_FORMAT = (TYPE = PARQUET) FORCE = TRUE",
        "COMMIT",
    ]


def test_append_shared_json_sql() -> None:
    columns = [("name", "VARCHAR"), ("Mixed Case", "FLOAT")]
    assert load_sql("METRICS", columns, "@OUT/", ["m/a.json"], "json", Partition(DAY), mode="append") == [
        "BEGIN",
        'COPY INTO METRICS (NAME, "Mixed Case", LOGICAL_DATE) '
        'FROM (SELECT $1:"name"::VARCHAR, $1:"Mixed Case"::FLOAT, \'2026-01-05\'::DATE FROM @OUT/) '
        "FILES = ('m/a.json') FILE_FORMAT = (TYPE = JSON STRIP_OUTER_ARRAY = TRUE) FORCE = TRUE",
        "COMMIT",
    ]


def test_empty_delivery_only_deletes_and_values_are_escaped() -> None:
    partition = Partition(DAY, "country", "d'e\\")
    assert load_sql("ML.T", COLUMNS, "@S", [], "parquet", partition) == [
        "BEGIN",
        "DELETE FROM ML.T WHERE LOGICAL_DATE = '2026-01-05'::DATE AND COUNTRY = 'd\\'e\\\\'",
        "COMMIT",
    ]


def test_create_table_sql() -> None:
    assert create_table_sql("ml.churn_scores", COLUMNS, DE) == (
        "CREATE TABLE IF NOT EXISTS ML.CHURN_SCORES "
        "(CUSTOMER_ID NUMBER(38,0), SCORE FLOAT, LOGICAL_DATE DATE, COUNTRY VARCHAR)"
    )


def test_too_many_files_is_refused() -> None:
    with pytest.raises(DeliveryError, match="at most 1000"):
        load_sql("T", COLUMNS, "@S", [f"f{i}.parquet" for i in range(1001)], "parquet", DE)


# --- runs on fakesnow, through deliver() and the Airflow SnowflakeHook ---------------------------------


@pytest.fixture
def snow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """fakesnow in place of snowflake.connector, a stage over tmp_path/bucket, and a hook connection."""
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
    # fakesnow reads a file:// stage over the local "bucket": the stage path is the value's folder there
    stage_path = lambda target, source: f"@{target['stage']}/{Path(source).name}"  # noqa: E731
    monkeypatch.setattr(dispatch, "stage_ref", stage_path)
    with fakesnow.patch():
        conn = snowflake.connector.connect(database="DB1", schema="ML")
        conn.cursor().execute(f"CREATE STAGE OUTPUTS URL = 'file://{bucket}/'")
        yield conn
        conn.close()


def _item(bucket: Path, run: str, rows: list[dict[str, Any]], files: int = 2) -> str:
    for i in range(files):
        write_parquet(bucket / run, f"predictions/part-{i}.parquet", rows[i::files])
    return str(bucket / run)


def _target(run: str, **extra: Any) -> dict[str, Any]:
    return {
        "to": "snowflake",
        "table": "ML.CHURN_SCORES",
        "stage": "OUTPUTS",
        "files": "predictions/*.parquet",
        **extra,
    }


def _rows(conn: Any) -> list[tuple[Any, ...]]:
    return sorted(conn.cursor().execute("SELECT * FROM ML.CHURN_SCORES").fetchall())


SCORES = [{"customer_id": i, "score": i / 4} for i in range(1, 4)]


def _expected(rows: list[dict[str, Any]], value: str) -> list[tuple[Any, ...]]:
    return sorted((r["customer_id"], r["score"], DAY, value) for r in rows)


@pytest.mark.integration
def test_fakesnow_load_rerun_and_side_by_side(snow: Any, tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    de = _item(bucket, "de", SCORES)
    fr = _item(bucket, "fr", SCORES[:1], files=1)
    assert deliver(_target("de"), de, DAY, "country", "de", snowflake_conn_id="snow_test") == 3
    assert deliver(_target("de"), de, DAY, "country", "de", snowflake_conn_id="snow_test") == 3
    assert deliver(_target("fr"), fr, DAY, "country", "fr", snowflake_conn_id="snow_test") == 1
    assert _rows(snow) == sorted(_expected(SCORES, "de") + _expected(SCORES[:1], "fr"))
    assert deliver(_target("fr", mode="append"), fr, DAY, "country", "fr", snowflake_conn_id="snow_test") == 1
    assert _rows(snow) == sorted(_expected(SCORES, "de") + _expected(SCORES[:1], "fr") * 2)


@pytest.mark.integration
def test_fakesnow_failed_copy_rolls_back_the_delete(snow: Any, tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    deliver(_target("de"), _item(bucket, "de", SCORES), DAY, "country", "de", snowflake_conn_id="snow_test")
    schema = pa.schema([("customer_id", pa.int64()), ("score", pa.float64())])
    write_parquet(bucket / "bad", "predictions/part-0.parquet", [{"customer_id": 9, "score": 0.9}], schema)
    # the COPY reads a file that is not parquet after the DELETE ran: the DELETE must be undone
    (bucket / "bad" / "predictions" / "part-1.parquet").write_bytes(b"PAR1 junk")
    # (deliver() would refuse the file before SQL runs, so call the loader that runs the SQL)
    files = ["predictions/part-0.parquet", "predictions/part-1.parquet"]
    with pytest.raises(DeliveryError, match=r"table ML\.CHURN_SCORES: load failed, nothing changed"):
        load_snowflake("snow_test", "ML.CHURN_SCORES", schema, "@OUTPUTS/bad", files, "parquet", DE)
    assert _rows(snow) == _expected(SCORES, "de")


@pytest.mark.integration
def test_fakesnow_column_mismatch(snow: Any, tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    deliver(_target("de"), _item(bucket, "de", SCORES), DAY, "country", "de", snowflake_conn_id="snow_test")
    other = _item(bucket, "x", [{"customer_id": 1, "proba": 0.5}], files=1)
    with pytest.raises(DeliveryError, match="missing in files: SCORE; not in table: PROBA"):
        deliver(_target("x"), other, DAY, "country", "de", snowflake_conn_id="snow_test")
    assert _rows(snow) == _expected(SCORES, "de")
