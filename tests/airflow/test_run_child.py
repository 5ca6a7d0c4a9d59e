"""The local run's child: dag.test()'s idle sleep ends when a worker reports, and nowhere else."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.executors.local_executor import LocalExecutor
from airflow.sdk.definitions import dag as dag_module

from dag_factory.airflow.run_child import _woken_when_a_task_ends


def _as_if_in_dag_test() -> Any:
    """A function whose frame looks like DAG.test's (its name, its file), calling the sleep it is given."""
    namespace: dict[str, Any] = {}
    exec(compile("def test(sleep, seconds):\n    sleep(seconds)\n", dag_module.__file__, "exec"), namespace)
    return namespace["test"]


def test_the_idle_sleep_of_dag_test_ends_when_a_worker_reports() -> None:
    real_sleep, real_start = time.sleep, LocalExecutor.start
    fake_dag_test = _as_if_in_dag_test()
    with _woken_when_a_task_ends():
        executor = LocalExecutor(parallelism=1)
        executor.start()
        try:
            report = threading.Timer(0.2, executor.result_queue.put, args=(("key", "success", None),))
            report.start()
            started = time.monotonic()
            fake_dag_test(time.sleep, 60)
            woken_after = time.monotonic() - started
            report.join()
            assert executor.result_queue.get() == ("key", "success", None)
            # any other caller sleeps for real
            started = time.monotonic()
            time.sleep(0.3)
            assert time.monotonic() - started >= 0.3
        finally:
            executor.end()
    assert woken_after < 30, "the sleep waited for its full minute instead of the worker's report"
    assert time.sleep is real_sleep and LocalExecutor.start is real_start


def test_without_an_executor_the_sleep_is_the_real_one() -> None:
    fake_dag_test = _as_if_in_dag_test()
    with _woken_when_a_task_ends():
        started = time.monotonic()
        fake_dag_test(time.sleep, 0.3)
        assert time.monotonic() - started >= 0.3


def _linger() -> None:  # a worker whose supervisor has not noticed its task exit yet
    time.sleep(120)


def _finish_a_callback(marker: str) -> None:  # a worker whose task process still runs its callback
    import subprocess
    import sys

    code = f"import pathlib, time; time.sleep(5); pathlib.Path({marker!r}).touch()"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_end_of_a_run_does_not_wait_for_a_lingering_worker() -> None:
    import multiprocessing

    from dag_factory.airflow.run_child import _ended_without_lingering_workers

    real_end = LocalExecutor.end
    with _ended_without_lingering_workers():
        executor = LocalExecutor(parallelism=1)
        executor.start()
        idle_pid = next(iter(executor.workers))
        lingering = multiprocessing.Process(target=_linger)
        lingering.start()
        assert lingering.pid is not None
        lingering_pid = lingering.pid
        executor.workers[lingering_pid] = lingering
        started = time.monotonic()
        executor.end()
        ended_after = time.monotonic() - started
    assert ended_after < 60, "end() waited for the lingering worker"
    for pid in (idle_pid, lingering_pid):  # both gone (and reaped): the idle one took its shutdown message
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert LocalExecutor.end is real_end


def test_the_end_of_a_run_waits_for_a_task_process_that_still_runs(tmp_path: Path) -> None:
    import multiprocessing

    from dag_factory.airflow.run_child import _ended_without_lingering_workers

    marker = tmp_path / "callback-done"
    with _ended_without_lingering_workers():
        executor = LocalExecutor(parallelism=1)
        executor.start()
        busy = multiprocessing.Process(target=_finish_a_callback, args=(str(marker),))
        busy.start()
        assert busy.pid is not None
        executor.workers[busy.pid] = busy
        executor.end()
    assert marker.exists(), "end() killed a worker whose task process was still running"


DELIVER_AFTER_PRELOAD = """
import importlib, json, sys
import pyarrow as pa, pyarrow.parquet as pq
from dag_factory.airflow.run_child import PRELOADED
for module in PRELOADED:
    importlib.import_module(module)
out = sys.argv[1]
pq.write_table(pa.table({"score": [0.5, 0.7]}), f"{out}/scores.parquet")
open(f"{out}/metrics.json", "w").write(json.dumps([{"auc": 0.8}]))
before = set(sys.modules)
from dag_factory.deliver import deliver
for table, files in (("ml.scores", "*.parquet"), ("ml.metrics", "*.json")):
    target = {"to": "duckdb", "path": f"{out}/warehouse.duckdb", "table": table, "files": files}
    deliver(target, out, "2026-01-05", "country", "de")
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_a_delivery_imports_nothing_heavy_after_the_preload(tmp_path: Path) -> None:
    """What a deliver task process (forked from the run's child) still imports: no pyarrow/pandas/duckdb."""
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", DELIVER_AFTER_PRELOAD, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = json.loads(proc.stdout.strip().splitlines()[-1])
    heavy = {"pandas", "pyarrow", "duckdb", "numpy"}
    assert [m for m in imported if m.split(".")[0] in heavy] == []
