"""The child process of a local run: `python -m dag_factory.airflow.run_child --dag-file F --dag-id D ...`.

dag_factory.local.execute starts it with the local Airflow home's environment (Airflow reads its
configuration at import, so it must be a fresh process), polls the metadata DB while it runs and
reads the outcome afterwards. It parses the DAG file and runs one DAG run with `dag.test(use_executor=
True)`: the LocalExecutor runs the fan-out in parallel; its tasks talk to the Execution API at
$AIRFLOW__CORE__EXECUTION_API_SERVER_URL (dag_factory.local.execution_server). Exit 0 success, 1 the
run failed, 3 the DAG file did not import, 4 no Execution API URL.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, SupportsIndex

from dag_factory.airflow.compat import warm_task_client_ssl_context

EXECUTION_API_VAR = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"
# imported once here, before the executor forks its workers, so that no task process imports them:
# every deliver task needs pyarrow and duckdb (~0.6 s of imports each), and its first parquet read
# imports pyarrow.dataset and with it pandas (~0.6-1 s more: 10 deliveries of the demo at once kept
# both cores busy for ~5 s). Locally every warehouse target loads into DuckDB, so its loader (which
# the dispatcher imports only when delivering to it) is preloaded too.
PRELOADED = ("dag_factory.deliver", "dag_factory.deliver.duckdb_target", "pyarrow.dataset")
END_GRACE = 0.5  # seconds the executor's workers get to exit once the DAG run is final


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _logical_date(value: str) -> datetime | None:
    return None if value == "none" else datetime.fromisoformat(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dag_factory.airflow.run_child")
    parser.add_argument("--dag-file", required=True, type=Path)
    parser.add_argument("--dag-id", required=True)
    # "none": a run without a logical date, as the REST API and asset triggers can create
    parser.add_argument("--logical-date", required=True, type=_logical_date)
    parser.add_argument("--run-after", required=True, type=datetime.fromisoformat)
    parser.add_argument("--timings", type=Path, help="write the start-up marks here (JSON)")
    args = parser.parse_args(argv)
    marks: dict[str, Any] = {"child_started": _now()}
    try:
        return _run(args, marks)
    finally:
        marks["child_finished"] = _now()
        if args.timings is not None:
            args.timings.write_text(json.dumps(marks, indent=2) + "\n")


def _run(args: argparse.Namespace, marks: dict[str, Any]) -> int:
    if not os.environ.get(EXECUTION_API_VAR):
        print(f"${EXECUTION_API_VAR} is not set: the tasks would have no Execution API", file=sys.stderr)
        return 4
    from airflow.dag_processing.dagbag import DagBag

    from dag_factory.airflow.dag_reuse import reuse_built_dags

    marks["airflow_imported"] = _now()
    reuse_built_dags()  # dag.test() and every task process parse the DAG file again: the DAG built here
    bag = DagBag(dag_folder=args.dag_file, safe_mode=False)
    marks["dag_parsed"] = _now()
    if bag.import_errors:
        for path, message in bag.import_errors.items():
            print(f"import error in {path}:\n{message}", file=sys.stderr)
        return 3
    dag = bag.dags.get(args.dag_id)
    if dag is None:
        print(f"no dag {args.dag_id!r} in {args.dag_file} (found: {sorted(bag.dags)})", file=sys.stderr)
        return 3
    for module in PRELOADED:
        importlib.import_module(module)
    warm_task_client_ssl_context()  # before the executor forks its workers
    marks["preloaded"] = _now()
    with (
        _woken_when_a_task_ends(),
        _task_exit_noticed_at_once(),
        _ended_without_lingering_workers(),
        _mismatch_callbacks_logged(),
    ):
        dag_run = dag.test(use_executor=True, logical_date=args.logical_date, run_after=args.run_after)
    print(f"dag run {dag_run.run_id} finished: {dag_run.state}", flush=True)
    return 0 if dag_run.state == "success" else 1


@contextlib.contextmanager
def _mismatch_callbacks_logged() -> Iterator[None]:
    """Under ``dag.test`` the executor has no callback sink, and the one callback it sends there is a
    state mismatch's (the executor reports a reschedule-mode sensor's poke done while the task is queued
    again, apache/airflow#71172): for a task with an on_retry/on_failure callback (the spec's `notify`)
    Airflow raised "Callback sink is not ready" and the whole run stopped (seen in CI). The callback is
    logged instead; the task goes on as the scheduler then handles it (its poke runs again)."""
    from airflow.executors.base_executor import BaseExecutor

    real_send = BaseExecutor.send_callback
    log = logging.getLogger("dag_factory.airflow.run_child")

    def send_callback(self: BaseExecutor, request: Any) -> None:
        if self.callback_sink is not None:
            real_send(self, request)
            return
        log.warning("not run under dag.test (no callback sink): %s", getattr(request, "msg", request))

    BaseExecutor.send_callback = send_callback  # type: ignore[method-assign]
    try:
        yield
    finally:
        BaseExecutor.send_callback = real_send  # type: ignore[method-assign]


@contextlib.contextmanager
def _woken_when_a_task_ends() -> Iterator[None]:
    """Let ``dag.test()`` notice a finished task at once instead of up to a second later.

    While tasks run and none is ready, ``DAG.test`` (Airflow 3.3) calls ``time.sleep(1)`` before it
    looks again: up to a second between a task and the next, on every step of every value. Within
    this block that one call (this process, called from ``DAG.test``) waits on the LocalExecutor's
    result queue instead, for at most the same second: a worker puts a result there as soon as its
    task process has exited. Every other ``time.sleep`` is the real one.
    """
    from airflow.executors.local_executor import LocalExecutor
    from airflow.sdk.definitions import dag as dag_module

    real_sleep, real_start = time.sleep, LocalExecutor.start
    started: list[LocalExecutor] = []
    pid = os.getpid()

    def start(self: LocalExecutor) -> None:
        real_start(self)
        started.append(self)

    def sleep(seconds: float | SupportsIndex) -> None:
        caller = sys._getframe(1).f_code
        reader = getattr(getattr(started[-1], "result_queue", None), "_reader", None) if started else None
        if (
            reader is None
            or os.getpid() != pid
            or caller.co_name != "test"
            or caller.co_filename != dag_module.__file__
        ):
            real_sleep(seconds)
            return
        reader.poll(float(seconds) if isinstance(seconds, int | float) else float(seconds.__index__()))
        # returns when a worker put a result there; the loop's executor heartbeat reads it

    LocalExecutor.start = start  # type: ignore[method-assign]
    time.sleep = sleep
    try:
        yield
    finally:
        time.sleep = real_sleep
        LocalExecutor.start = real_start  # type: ignore[method-assign]


@contextlib.contextmanager
def _task_exit_noticed_at_once() -> Iterator[None]:
    """Let a task's supervisor notice its task process's exit when it happens, not up to 5 s later.

    The supervisor (in an executor worker) waits in ``select`` on the task process's sockets, at most
    ``[workers] min_heartbeat_interval`` (5 s), then checks whether the process has exited. A process
    closes its sockets an instant before it exits: when the check comes in that instant, no socket is
    left to wake the ``select`` and the supervisor sleeps out the 5 s (a third of the tasks of a
    one-value run, 2.8-5.4 s each). Within this block, a supervisor with no socket left waits for the
    exit itself, for the same time at most. The workers fork inside ``dag.test()``: they inherit it.
    """
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    real_service = WatchedSubprocess._service_subprocess

    def service(self: WatchedSubprocess, max_wait_time: float, *args: Any, **kwargs: Any) -> int | None:
        if self._exit_code is None and not self.selector.get_map():
            with contextlib.suppress(self._process.TimeoutExpired):
                self._process.wait(timeout=max_wait_time)  # its code is kept for the check below
            max_wait_time = 0
        code: int | None = real_service(self, max_wait_time, *args, **kwargs)
        return code

    WatchedSubprocess._service_subprocess = service  # type: ignore[method-assign]
    try:
        yield
    finally:
        WatchedSubprocess._service_subprocess = real_service  # type: ignore[method-assign]


@contextlib.contextmanager
def _ended_without_lingering_workers() -> Iterator[None]:
    """Stop the LocalExecutor at the end of ``dag.test()`` without waiting out idle supervisors.

    ``LocalExecutor.end()`` joins every worker. A worker's task supervisor can miss its task
    process's exit until its next heartbeat tick (``[workers] min_heartbeat_interval``, 5 s: when
    the task closed its sockets an instant before it exited), so a run's end often waited ~4 s
    for nothing. ``dag.test()`` ends the executor only once the DAG run is final: every task has
    reported its state. So the workers get their shutdown message and :data:`END_GRACE` seconds;
    a worker still there whose task process is gone has nothing left to do and is killed; one whose
    task process still runs (an ``on_failure_callback`` sending its mail) is waited for, as before.
    Then the real ``end()`` reads the results and closes up.
    """
    from airflow.executors.local_executor import LocalExecutor

    real_end = LocalExecutor.end

    def end(self: LocalExecutor) -> None:
        workers = [proc for proc in self.workers.values() if proc.is_alive()]
        for _ in workers:
            self.activity_queue.put(None)
        deadline = time.monotonic() + END_GRACE
        for proc in workers:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for proc in workers:
            if proc.is_alive() and proc.pid is not None and not _has_live_children(proc.pid):
                proc.kill()
            proc.join()
        real_end(self)

    LocalExecutor.end = end  # type: ignore[method-assign]
    try:
        yield
    finally:
        LocalExecutor.end = real_end  # type: ignore[method-assign]


def _has_live_children(pid: int) -> bool:
    """True when process ``pid`` has a descendant that still runs (not a zombie waiting to be reaped)."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return False
    for child in children:
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def exit_now(code: int) -> NoReturn:
    """End the process without the interpreter's teardown: once the run is over (its states committed,
    its marks written, the executor's workers ended), unwinding a process that imported Airflow, pandas
    and pyarrow (atexit handlers, every module and object freed) took 4-6 s on a loaded machine and
    did nothing the run needs. Its output is flushed first."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    exit_now(main())
