"""The local run's child: dag.test()'s idle sleep ends when a worker reports, and nowhere else."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.executors.local_executor import LocalExecutor
from airflow.sdk.definitions import dag as dag_module

from dag_factory.airflow.run_child import _woken_when_a_task_ends
from dag_factory.local.airflow_home import ApiServer, log_tail


def _as_if_in_dag_test() -> Any:
    """A function whose frame looks like DAG.test's (its name, its file), calling the sleep it is given."""
    namespace: dict[str, Any] = {}
    exec(compile("def test(sleep, seconds):\n    sleep(seconds)\n", dag_module.__file__, "exec"), namespace)
    return namespace["test"]


# Loaded by the run's child (`python -m dag_factory.airflow.run_child`, started by run_dag) through
# PYTHONPATH; it only observes. DAG.test logs "No tasks to run" right before each idle `time.sleep(1)` and
# calls `executor.heartbeat()` right after it: one JSON line per idle wait, its start and end (monotonic
# seconds) and whether a worker's report was waiting in the executor's result queue when it ended.
IDLE_WAIT_OBSERVER = """
import os, sys
_OUT = os.environ.get("TEST_IDLE_WAITS")
if _OUT and "dag_factory.airflow.run_child" in sys.orig_argv:
    import json, logging, time

    _PID = os.getpid()
    _open = []
    _make_record = logging.getLogRecordFactory()

    def _observe_heartbeat():
        from airflow.executors.local_executor import LocalExecutor

        real = LocalExecutor.heartbeat
        if getattr(real, "observed", False):
            return

        def heartbeat(self):
            if os.getpid() == _PID and _open:
                ended, report_waiting = time.monotonic(), not self.result_queue.empty()
                wait = {"start": _open.pop(), "end": ended, "report_waiting": report_waiting}
                with open(_OUT, "a") as out:
                    out.write(json.dumps(wait) + "\\n")
            real(self)

        heartbeat.observed = True
        LocalExecutor.heartbeat = heartbeat

    def _record(*args, **kwargs):
        record = _make_record(*args, **kwargs)
        if (
            os.getpid() == _PID
            and record.name == "airflow.sdk.definitions.dag"
            and str(record.msg).startswith("No tasks to run")
        ):
            _observe_heartbeat()
            _open[:] = [time.monotonic()]
        return record

    logging.setLogRecordFactory(_record)
"""

IDLE_SLEEP_S = 1.0  # DAG.test (Airflow 3.3) sleeps this long whenever no task is ready to queue

# `first` ends at once; `second` runs until the run's log shows that the loop received first's report
# (`dag.test()` logs every executor event), so that report reaches a running loop whenever it comes:
# its worker reports a moment after the task process exits, or at its supervisor's next heartbeat.
# `lingers` closes every socket to its supervisor and then takes LINGER_S to exit (the instant between a
# task process closing its sockets and exiting, made long): `second` waits for its report too.
LINGER_S = 2.0
TWO_TASK_DAG = """
from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

RECEIVED = (
    "Received executor event with state success for task instance "
    "TaskInstanceKey(dag_id='{dag_id}', task_id='{{task}}', run_id='{{{{{{{{ run_id }}}}}}}}'"
)
WAIT = (
    'for _ in $(seq 1200); do grep -qsF "$FIRST" {logs}/*.log && grep -qsF "$LINGERS" {logs}/*.log '
    "&& exit 0; sleep 0.1; done; exit 1"
)


def linger():
    import atexit, os, time

    def close_then_wait():
        os.closerange(0, 1024)
        time.sleep({linger_s})

    atexit.register(close_then_wait)


with DAG("{dag_id}", start_date=datetime(2026, 1, 1), schedule=None):
    first = BashOperator(task_id="first", bash_command="echo first")
    lingers = PythonOperator(task_id="lingers", python_callable=linger)
    received = {{"FIRST": RECEIVED.format(task="first"), "LINGERS": RECEIVED.format(task="lingers")}}
    second = BashOperator(task_id="second", bash_command=WAIT, env=received, append_env=True)
    [first, lingers] >> second
"""


@pytest.mark.integration
def test_the_idle_sleep_of_dag_test_ends_when_a_worker_reports(
    airflow_server: ApiServer, tmp_path: Path
) -> None:
    """A real two-task run through run_dag (run_child, dag.test(use_executor=True), LocalExecutor): every
    idle sleep of DAG.test lasts its second unless a worker's report ends it, and the report does end it."""
    import json
    import uuid

    from dag_factory.local.execute import run_dag

    dag_id = f"idle_sleep_{uuid.uuid4().hex[:8]}"
    logs = Path(airflow_server.env["AIRFLOW_HOME"]) / "logs" / "runs"
    dag_file = tmp_path / "dags" / f"{dag_id}.py"
    dag_file.parent.mkdir()
    dag_file.write_text(TWO_TASK_DAG.format(dag_id=dag_id, logs=logs, linger_s=LINGER_S))
    observer = tmp_path / "observer"
    observer.mkdir()
    (observer / "sitecustomize.py").write_text(IDLE_WAIT_OBSERVER)
    waits_file = tmp_path / "idle-waits.jsonl"
    path = os.pathsep.join(p for p in (str(observer), os.environ.get("PYTHONPATH", "")) if p)
    env = {**airflow_server.env, "PYTHONPATH": path, "TEST_IDLE_WAITS": str(waits_file)}

    result = run_dag(dag_file, dag_id, logical_date=datetime(2026, 1, 5, tzinfo=UTC), env=env, timeout=300)

    assert result.succeeded, result.error
    first, second = result.ti("first"), result.ti("second")
    assert first.end is not None and second.start is not None and first.end <= second.start
    assert waits_file.exists(), f"the observer saw no idle sleep of DAG.test:\n{log_tail(result.log_path)}"
    waits = [json.loads(line) for line in waits_file.read_text().splitlines()]
    lasted = [(w["end"] - w["start"], w["report_waiting"]) for w in waits]
    shown = [(round(seconds, 3), report) for seconds, report in lasted]
    print(f"idle sleeps of DAG.test (seconds, report waiting): {shown}; run {result.wall_seconds:.1f}s")
    ended_early = [report for seconds, report in lasted if seconds < IDLE_SLEEP_S]
    # first's report came while the loop ran (second waited for it): it ended the sleep it came in, and
    # only a report ends a sleep early
    assert ended_early, f"every idle sleep lasted its full second, also the one a report came in: {shown}"
    assert all(ended_early), f"an idle sleep ended early with no report waiting: {shown}"

    # a supervisor notices its task process's exit when it comes, not at its next 5-second heartbeat tick
    lingers = result.ti("lingers")
    mark = f"task_id='lingers', run_id='{result.run_id}'"
    received = [
        line for line in result.log_path.read_text().splitlines() if "Received executor event" in line
    ]
    reported = [datetime.fromisoformat(line.split()[0]) for line in received if mark in line]
    assert lingers.end is not None and reported, log_tail(result.log_path)
    late = (reported[0] - lingers.end).total_seconds()
    print(f"lingers: its process exited {LINGER_S}s after its end, reported {late:.2f}s after its end")
    assert LINGER_S <= late < LINGER_S + 1.5

    # any other caller sleeps for real, also while an executor runs; the block leaves nothing patched
    real_sleep, real_start = time.sleep, LocalExecutor.start
    with _woken_when_a_task_ends():
        executor = LocalExecutor(parallelism=1)
        executor.start()
        try:
            started = time.monotonic()
            time.sleep(0.3)
            assert time.monotonic() - started >= 0.3
        finally:
            executor.end()
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


def test_a_state_mismatch_callback_without_a_sink_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """dag.test's executor has no callback sink: a state mismatch of a task with a notify callback
    (apache/airflow#71172) raised "Callback sink is not ready" and stopped the whole run in CI."""
    from types import SimpleNamespace

    from dag_factory.airflow.run_child import _mismatch_callbacks_logged

    executor = LocalExecutor()
    request = SimpleNamespace(msg="Executor reported success but the task instance's state is queued")
    with pytest.raises(ValueError, match="Callback sink is not ready"):
        executor.send_callback(request)  # type: ignore[arg-type]
    with _mismatch_callbacks_logged(), caplog.at_level("WARNING", logger="dag_factory.airflow.run_child"):
        executor.send_callback(request)  # type: ignore[arg-type]
    assert "not run under dag.test (no callback sink): Executor reported success" in caplog.text
    with pytest.raises(ValueError, match="Callback sink is not ready"):  # Airflow's own again after the run
        executor.send_callback(request)  # type: ignore[arg-type]


EXIT_AFTER_THE_RUN = """
import atexit, sys
from dag_factory.airflow.run_child import exit_now
atexit.register(lambda: print("teardown ran", flush=True))
print("the run's last line")  # no flush: exit_now flushes it
exit_now(3)
"""


def test_the_child_exits_with_its_code_and_output_but_without_the_teardown() -> None:
    """The run's child ends at once when the run is over: its code and its last lines, not the
    interpreter's teardown (atexit handlers, freeing every module: 4-6 s after the run in a process
    that imported Airflow and pandas)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", EXIT_AFTER_THE_RUN], capture_output=True, text=True, check=False
    )
    assert (proc.returncode, proc.stdout) == (3, "the run's last line\n")


def test_the_workers_inherit_the_task_clients_ssl_context() -> None:
    """The child makes the Execution API client's SSL context before the executor forks: a task's
    supervisor (in a forked worker) finds it in the cache instead of loading the CA certificates again."""
    from airflow.sdk.api.client import Client

    from dag_factory.airflow.compat import warm_task_client_ssl_context

    Client._get_ssl_context_cached.cache_clear()
    warm_task_client_ssl_context()
    Client(base_url="http://127.0.0.1:9/execution/", token="token").close()
    info = Client._get_ssl_context_cached.cache_info()
    assert (info.misses, info.hits) == (1, 1)
