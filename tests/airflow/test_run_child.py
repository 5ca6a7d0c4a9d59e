"""The local run's child: dag.test()'s idle sleep ends when a worker reports, and nowhere else."""

from __future__ import annotations

import threading
import time
from typing import Any

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
