"""The same load scenarios against DuckDB (a file) and PostgreSQL (a real local server).

Each test goes through ``deliver()`` with a plain target dict, as the Airflow task does, and asserts on
the rows in the table, not only on the count returned.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from dag_factory.deliver import DeliveryError, deliver
from tests.deliver.outputs import delivery_logs, write_corrupt, write_json, write_parquet
from tests.servers.postgres import PostgresServer

DAY = dt.date(2026, 1, 5)
NEXT_DAY = dt.date(2026, 1, 12)
TABLE = "ml.churn_scores"


@dataclass
class Warehouse:
    """A target dict builder plus a way to read a table back as sorted tuples."""

    target: Callable[..., dict[str, Any]]
    rows: Callable[[str], list[tuple[Any, ...]]]
    conn_ids: dict[str, str]

    def load(
        self,
        target: dict[str, Any],
        prefix: str,
        day: Any,
        column: str | None,
        value: str | None,
        **run: Any,
    ) -> int:
        return deliver(target, prefix, day, column, value, **run, **self.conn_ids)


def _duckdb_warehouse(tmp_path: Path) -> Warehouse:
    path = str(tmp_path / "warehouse.duckdb")

    def target(**extra: Any) -> dict[str, Any]:
        return {"to": "duckdb", "path": path, "table": TABLE, "files": "predictions/*.parquet", **extra}

    def rows(table: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(path, read_only=True) as con:
            return sorted(con.execute(f"SELECT * FROM {table}").fetchall())

    return Warehouse(target, rows, {})


def _postgres_warehouse(server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    monkeypatch.setenv("AIRFLOW_CONN_DELIVER_PG", server.uri)

    def target(**extra: Any) -> dict[str, Any]:
        return {"to": "postgres", "table": TABLE, "files": "predictions/*.parquet", **extra}

    def rows(table: str) -> list[tuple[Any, ...]]:
        with server.connect() as conn:
            return sorted(conn.execute(f"SELECT * FROM {table}").fetchall())

    return Warehouse(target, rows, {"postgres_conn_id": "deliver_pg"})


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.integration)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    if request.param == "duckdb":
        return _duckdb_warehouse(tmp_path)
    return _postgres_warehouse(request.getfixturevalue("postgres_db"), monkeypatch)


def _prefix(base: Path, name: str, rows: list[dict[str, Any]], files: int = 2) -> str:
    """Write rows spread over ``files`` parquet files under a fresh item prefix."""
    root = base / name
    for i in range(files):
        write_parquet(root, f"predictions/part-{i}.parquet", rows[i::files])
    return str(root)


SCORES_DE = [{"customer_id": i, "score": i / 10} for i in range(1, 4)]
SCORES_FR = [{"customer_id": i, "score": i / 100} for i in range(10, 12)]


def _expected(rows: list[dict[str, Any]], day: dt.date, value: str) -> list[tuple[Any, ...]]:
    return sorted((r["customer_id"], r["score"], day, value) for r in rows)


def test_first_load(warehouse: Warehouse, tmp_path: Path) -> None:
    prefix = _prefix(tmp_path, "de", SCORES_DE)
    with delivery_logs() as messages:
        count = warehouse.load(warehouse.target(), prefix, DAY, "country", "de")
    assert count == 3
    assert warehouse.rows(TABLE) == _expected(SCORES_DE, DAY, "de")
    assert any(m.startswith("loaded 3 row(s) into") for m in messages)


def test_rerun_is_idempotent(warehouse: Warehouse, tmp_path: Path) -> None:
    prefix = _prefix(tmp_path, "de", SCORES_DE)
    for _ in range(2):
        assert warehouse.load(warehouse.target(), prefix, DAY, "country", "de") == 3
    assert warehouse.rows(TABLE) == _expected(SCORES_DE, DAY, "de")


def test_replacing_one_value_leaves_the_others(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.load(warehouse.target(), _prefix(tmp_path, "de", SCORES_DE), DAY, "country", "de")
    warehouse.load(warehouse.target(), _prefix(tmp_path, "fr", SCORES_FR), DAY, "country", "fr")
    warehouse.load(warehouse.target(), _prefix(tmp_path, "de2", SCORES_DE), NEXT_DAY, "country", "de")
    new_de = [{"customer_id": 7, "score": 0.7}]
    count = deliver(
        warehouse.target(),
        _prefix(tmp_path, "de3", new_de, files=1),
        DAY,
        "country",
        "de",
        **warehouse.conn_ids,
    )
    assert count == 1
    assert warehouse.rows(TABLE) == sorted(
        _expected(new_de, DAY, "de") + _expected(SCORES_FR, DAY, "fr") + _expected(SCORES_DE, NEXT_DAY, "de")
    )


RUN = "scheduled__2026-01-05T04:00:00+00:00"
LEDGER = "ml._dag_factory_deliveries"
DE_KEY = "logical_date=2026-01-05, country=de"


def _ledger(warehouse: Warehouse) -> list[tuple[Any, ...]]:
    """The ledger's rows without their time stamp."""
    return [row[:-1] for row in warehouse.rows(LEDGER)]


def test_append_retry_after_commit_delivers_once(warehouse: Warehouse, tmp_path: Path) -> None:
    # try 1 committed its rows, then the task failed (a lost acknowledgement, an XCom push that timed
    # out): Airflow runs try 2 of the same task, with the same run id, on the same files
    prefix = _prefix(tmp_path, "de", SCORES_DE)
    target = warehouse.target(mode="append")
    assert warehouse.load(target, prefix, DAY, "country", "de", run_id=RUN, try_number=1) == 3
    with delivery_logs() as messages:
        assert warehouse.load(target, prefix, DAY, "country", "de", run_id=RUN, try_number=2) == 3
    assert warehouse.rows(TABLE) == _expected(SCORES_DE, DAY, "de")
    skipped = [m for m in messages if "already delivered" in m]
    assert len(skipped) == 1, messages
    assert skipped[0].startswith(
        f"table ml.churn_scores ({DE_KEY}): already delivered by try 1 of run {RUN} at "
    )
    assert skipped[0].endswith(" (3 row(s)): not appended again")
    assert _ledger(warehouse) == [(TABLE, RUN, DE_KEY, "append", 1, 3)]


def test_append_adds_each_runs_rows(warehouse: Warehouse, tmp_path: Path) -> None:
    # a re-run of the date is another run: append means its rows are added too
    prefix = _prefix(tmp_path, "de", SCORES_DE)
    for run in ("manual__1", "manual__2"):
        assert warehouse.load(warehouse.target(mode="append"), prefix, DAY, "country", "de", run_id=run) == 3
    assert warehouse.rows(TABLE) == sorted(_expected(SCORES_DE, DAY, "de") * 2)
    assert _ledger(warehouse) == [
        (TABLE, "manual__1", DE_KEY, "append", None, 3),
        (TABLE, "manual__2", DE_KEY, "append", None, 3),
    ]


def test_a_failed_append_is_not_recorded(warehouse: Warehouse, tmp_path: Path) -> None:
    # the ledger row is written in the load's transaction: a load that failed is retried in full
    warehouse.load(warehouse.target(), _prefix(tmp_path, "fr", SCORES_FR), DAY, "country", "fr")
    bad = _prefix(tmp_path, "bad", [{"customer_id": 5, "score": "not a number"}], files=1)
    with pytest.raises(DeliveryError, match=r"ml.churn_scores"):
        warehouse.load(warehouse.target(mode="append"), bad, DAY, "country", "de", run_id=RUN, try_number=1)
    good = _prefix(tmp_path, "de", SCORES_DE)
    assert warehouse.load(warehouse.target(mode="append"), good, DAY, "country", "de", run_id=RUN) == 3
    assert warehouse.rows(TABLE) == sorted(_expected(SCORES_DE, DAY, "de") + _expected(SCORES_FR, DAY, "fr"))
    assert [row for row in _ledger(warehouse) if row[1] == RUN] == [(TABLE, RUN, DE_KEY, "append", None, 3)]


def test_replace_records_the_latest_try(warehouse: Warehouse, tmp_path: Path) -> None:
    prefix = _prefix(tmp_path, "de", SCORES_DE)
    for try_number in (1, 2):
        warehouse.load(warehouse.target(), prefix, DAY, "country", "de", run_id=RUN, try_number=try_number)
    assert warehouse.rows(TABLE) == _expected(SCORES_DE, DAY, "de")
    assert _ledger(warehouse) == [(TABLE, RUN, DE_KEY, "replace_partition", 2, 3)]


def test_corrupt_file_midway_leaves_old_rows(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.load(warehouse.target(), _prefix(tmp_path, "de", SCORES_DE), DAY, "country", "de")
    bad = _prefix(tmp_path, "bad", [{"customer_id": 99, "score": 9.9}] * 2)
    write_corrupt(Path(bad), "predictions/part-2.parquet")
    with pytest.raises(DeliveryError, match=r"predictions/part-2.parquet: cannot read parquet file"):
        warehouse.load(warehouse.target(), bad, DAY, "country", "de")
    assert warehouse.rows(TABLE) == _expected(SCORES_DE, DAY, "de")


def test_insert_error_after_delete_rolls_back(warehouse: Warehouse, tmp_path: Path) -> None:
    # the files read fine but a value does not fit the column: the DELETE already ran and must be undone
    warehouse.load(warehouse.target(), _prefix(tmp_path, "de", SCORES_DE), DAY, "country", "de")
    bad = _prefix(tmp_path, "bad", [{"customer_id": 5, "score": "not a number"}], files=1)
    with pytest.raises(DeliveryError, match=r"ml.churn_scores"):
        warehouse.load(warehouse.target(), bad, DAY, "country", "de")
    assert warehouse.rows(TABLE) == _expected(SCORES_DE, DAY, "de")


def test_failed_first_load_creates_no_table(warehouse: Warehouse, tmp_path: Path) -> None:
    ok = _prefix(tmp_path, "de", SCORES_DE)
    write_corrupt(Path(ok), "predictions/part-9.parquet")
    with pytest.raises(DeliveryError):
        warehouse.load(warehouse.target(), ok, DAY, "country", "de")
    # postgres: no such table; duckdb: not even a database file
    with pytest.raises(Exception, match=r"churn_scores|does not exist"):
        warehouse.rows(TABLE)


def test_column_mismatch_names_both_sides(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.load(warehouse.target(), _prefix(tmp_path, "de", SCORES_DE), DAY, "country", "de")
    renamed = _prefix(tmp_path, "new", [{"customer_id": 1, "proba": 0.5}], files=1)
    with pytest.raises(DeliveryError) as info:
        warehouse.load(warehouse.target(), renamed, DAY, "country", "de")
    assert str(info.value).startswith(
        "table ml.churn_scores: columns do not match: missing in files: score; not in table: proba"
    )
    assert warehouse.rows(TABLE) == _expected(SCORES_DE, DAY, "de")


def test_zero_files_is_an_error(warehouse: Warehouse, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DeliveryError, match=r"no files match 'predictions/\*.parquet' under .*empty"):
        warehouse.load(warehouse.target(), str(empty), DAY, "country", "de")


def test_allow_empty_replaces_the_partition_with_nothing(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.load(warehouse.target(), _prefix(tmp_path, "de", SCORES_DE), DAY, "country", "de")
    warehouse.load(warehouse.target(), _prefix(tmp_path, "fr", SCORES_FR), DAY, "country", "fr")
    empty = tmp_path / "empty"
    empty.mkdir()
    count = warehouse.load(warehouse.target(allow_empty=True), str(empty), DAY, "country", "de")
    assert count == 0
    assert warehouse.rows(TABLE) == _expected(SCORES_FR, DAY, "fr")


def test_allow_empty_without_a_table_loads_nothing(warehouse: Warehouse, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert warehouse.load(warehouse.target(allow_empty=True), str(empty), DAY, "country", "de") == 0


def test_json_files_and_shared_partition(warehouse: Warehouse, tmp_path: Path) -> None:
    root = tmp_path / "shared"
    write_json(root, "metrics/a.json", [{"name": "auc", "value": 0.8}])
    write_json(
        root, "metrics/b.json", [{"name": "f1", "value": 0.6}, {"name": "acc", "value": 0.9}], lines=True
    )
    target = warehouse.target(table="ml.metrics", files="metrics/*.json")
    for _ in range(2):
        assert warehouse.load(target, str(root), DAY.isoformat(), None, None) == 3
    assert warehouse.rows("ml.metrics") == [("acc", 0.9, DAY), ("auc", 0.8, DAY), ("f1", 0.6, DAY)]


def test_files_carrying_another_partition_value_are_refused(warehouse: Warehouse, tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    write_parquet(root, "predictions/a.parquet", [{"customer_id": 1, "score": 0.1, "country": "fr"}])
    with pytest.raises(DeliveryError, match=r"column 'country' holds fr but this partition is country=de"):
        warehouse.load(warehouse.target(), str(root), DAY, "country", "de")


def test_quoted_identifiers_are_safe(warehouse: Warehouse, tmp_path: Path) -> None:
    root = tmp_path / "odd"
    write_parquet(root, "predictions/a.parquet", [{'we"ird; DROP TABLE x; --': 1, "Mixed Case": "a'b"}])
    assert warehouse.load(warehouse.target(table="odd_names"), str(root), DAY, "country", "d'e") == 1
    assert warehouse.rows("odd_names") == [(1, "a'b", DAY, "d'e")]


def test_bad_table_name_is_refused(warehouse: Warehouse, tmp_path: Path) -> None:
    with pytest.raises(DeliveryError, match="table: String should match pattern"):
        warehouse.load(
            warehouse.target(table="ml.x; drop table y"),
            _prefix(tmp_path, "de", SCORES_DE),
            DAY,
            "country",
            "de",
        )


def test_value_types_round_trip(warehouse: Warehouse, tmp_path: Path) -> None:
    when = dt.datetime(2026, 1, 5, 4, 30, 15, 123456)
    row = {
        "i": 1,
        "f": 0.5,
        "b": True,
        "s": 'a,b "c"\nd',
        "empty": "",
        "none": None,
        "d": dt.date(2025, 12, 31),
        "ts": when,
    }
    schema = pa.schema(
        [
            ("i", pa.int64()),
            ("f", pa.float64()),
            ("b", pa.bool_()),
            ("s", pa.string()),
            ("empty", pa.string()),
            ("none", pa.string()),
            ("d", pa.date32()),
            ("ts", pa.timestamp("us")),
        ]
    )
    write_parquet(tmp_path / "t", "predictions/a.parquet", [row], schema)
    assert warehouse.load(warehouse.target(table="typed"), str(tmp_path / "t"), DAY, "country", "de") == 1
    assert warehouse.rows("typed") == [
        (1, 0.5, True, 'a,b "c"\nd', "", None, dt.date(2025, 12, 31), when, DAY, "de")
    ]


@pytest.mark.integration
def test_parallel_postgres_loads_into_a_new_table(
    postgres_db: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fan-out items deliver at the same time; an advisory lock keeps the CREATE TABLEs from colliding
    # (not for duckdb: a duckdb file takes one writing process at a time)
    warehouse = _postgres_warehouse(postgres_db, monkeypatch)
    values = ["de", "fr", "nl", "be"]
    prefixes = {v: _prefix(tmp_path, v, [{"customer_id": i, "score": 1.0} for i in range(3)]) for v in values}
    with ThreadPoolExecutor(len(values)) as pool:
        counts = list(
            pool.map(lambda v: warehouse.load(warehouse.target(), prefixes[v], DAY, "country", v), values)
        )
    assert counts == [3, 3, 3, 3]
    assert len(warehouse.rows(TABLE)) == 12
    assert sorted({r[3] for r in warehouse.rows(TABLE)}) == sorted(values)


def test_duckdb_waits_for_another_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # another process (a parallel local task) holds the file: the load waits, then succeeds. The holder
    # lets go only when told, after the load was refused at least once; the load must open the file
    # after that, not before
    db = tmp_path / "w.duckdb"
    duckdb.connect(str(db)).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(db)!r}); print('ok', flush=True); "
            "sys.stdin.readline()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    events: list[str] = []  # in order: "refused" (the file was held), "released", "opened"
    refused = threading.Event()
    connect = duckdb.connect

    def watched_connect(database: Any = ":memory:", *args: Any, **kwargs: Any) -> Any:
        if str(database) != str(db):
            return connect(database, *args, **kwargs)
        try:
            con = connect(database, *args, **kwargs)
        except duckdb.IOException:
            events.append("refused")
            refused.set()
            raise
        events.append("opened")
        return con

    pool = ThreadPoolExecutor(1)
    try:
        assert holder.stdin is not None and holder.stdout is not None
        assert holder.stdout.readline().strip() == "ok"
        warehouse = _duckdb_warehouse(tmp_path)
        target = {**warehouse.target(), "path": str(db)}
        prefix = _prefix(tmp_path, "de", SCORES_DE)
        monkeypatch.setattr(duckdb, "connect", watched_connect)
        loading = pool.submit(deliver, target, prefix, DAY, "country", "de")
        assert refused.wait(timeout=60), f"the load never found the file held: {events}, {loading}"
        events.append("released")
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert loading.result(timeout=60) == 3
        monkeypatch.undo()
    finally:
        holder.kill()  # a failed test must not leave the load waiting for the file
        holder.wait(timeout=30)
        pool.shutdown()
    assert events[0] == "refused" and events[-2:] == ["released", "opened"], events
    with duckdb.connect(str(db), read_only=True) as con:
        assert sorted(con.execute(f"SELECT * FROM {TABLE}").fetchall()) == _expected(SCORES_DE, DAY, "de")


def waiting_for_lock(path: Path) -> bool:
    """A thread of this process waits in the kernel for a lock on ``path`` (a ``->`` line of /proc/locks)."""
    st = path.stat()
    file_id = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1:2] == ["->"] and fields[-3] == file_id and fields[-4] == str(os.getpid()):
            return True
    return False


def test_duckdb_deliveries_take_turns_on_the_lock_file(tmp_path: Path) -> None:
    # parallel local deliveries queue on <file>.deliver-lock: the next starts when the lock is released
    db = tmp_path / "w.duckdb"
    warehouse = _duckdb_warehouse(tmp_path)
    target = {**warehouse.target(), "path": str(db)}
    prefix = _prefix(tmp_path, "de", SCORES_DE)
    lock_path = Path(f"{db}.deliver-lock")
    with ThreadPoolExecutor(1) as pool, open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another delivery is loading
        queued = pool.submit(deliver, target, prefix, DAY, "country", "de")
        deadline = time.monotonic() + 60
        while not waiting_for_lock(lock_path):  # the kernel has it queued behind our lock
            assert not queued.done(), f"the delivery did not wait for the lock: {queued}"
            assert time.monotonic() < deadline, "the delivery never queued on the lock file within 60 s"
            time.sleep(0.02)
        assert not queued.done() and not db.exists()  # waiting for its turn, not opening the file
        fcntl.flock(lock, fcntl.LOCK_UN)
        assert queued.result(timeout=60) == 3
