"""Helpers for the processes of a local run."""

from __future__ import annotations

import subprocess
import time

import psutil

from dag_factory.local.processes import free_port, stop_session


def test_free_port() -> None:
    assert 0 < free_port() < 65536


def test_stop_session_stops_the_whole_group_and_returns_once_it_is_gone() -> None:
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & echo started; wait"], stdout=subprocess.PIPE,
                              start_new_session=True)  # fmt: skip
    assert leader.stdout is not None and leader.stdout.readline() == b"started\n"
    members = [psutil.Process(leader.pid), *psutil.Process(leader.pid).children()]
    assert len(members) == 2
    started = time.monotonic()
    stop_session(members[0], grace=10)
    assert time.monotonic() - started < 5  # SIGTERM did it, no SIGKILL after the grace period
    for member in members:
        assert not member.is_running() or member.status() == psutil.STATUS_ZOMBIE
    leader.wait(timeout=5)
    leader.stdout.close()
