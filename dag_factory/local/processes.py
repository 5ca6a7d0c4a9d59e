"""The processes of a local run: stopping a process group and all it started (a run's child, or a
server in a session of its own), signals during a run (SIGTERM as an exit, Ctrl-C held off during a
clean-up), a free port for a server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import psutil


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process_group(proc: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM the process group led by ``proc``, then SIGKILL it after ``grace`` seconds.

    Airflow runs each task in a process group of its own (its supervisor forwards the SIGTERM to it):
    those, and whatever they started, get the rest of ``grace`` to stop, then SIGKILL, so that nothing
    of the run still writes into its work directories when this returns.
    """
    if proc.poll() is not None:
        _kill_group(proc.pid, signal.SIGKILL)  # reap stragglers left in the group
        return
    deadline = time.monotonic() + grace
    descendants = _descendants(proc.pid)  # while they are still its descendants
    _kill_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    _kill_group(proc.pid, signal.SIGKILL)
    _, alive = psutil.wait_procs(descendants, timeout=max(0.0, deadline - time.monotonic()))
    for straggler in alive:
        with contextlib.suppress(psutil.Error):
            straggler.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def stop_session(leader: psutil.Process, *, grace: float = 10.0) -> None:
    """SIGTERM the process group ``leader`` leads (a server that detached into a session of its own,
    not our child), then SIGKILL what is left of it after ``grace`` seconds; returns once all are gone.

    Only the leader itself is signalled when it leads no group (``os.setsid`` not called)."""
    members = [leader, *_descendants(leader.pid)]
    try:
        group = os.getpgid(leader.pid) == leader.pid
    except OSError:
        return  # gone already
    if group:
        _kill_group(leader.pid, signal.SIGTERM)
    else:
        with contextlib.suppress(psutil.Error):
            leader.terminate()
    alive = _wait_gone(members, grace)
    if group and alive:
        _kill_group(leader.pid, signal.SIGKILL)
    for straggler in alive:
        with contextlib.suppress(psutil.Error):
            straggler.kill()
    _wait_gone(alive, 5)


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until each process has exited (one that is not our child may stay a zombie until its new
    parent reaps it: that counts as gone); those still running after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    alive = processes
    while alive:
        _, alive = psutil.wait_procs(alive, timeout=min(0.5, max(0.0, deadline - time.monotonic())))
        alive = [p for p in alive if _running(p)]
        if time.monotonic() >= deadline:
            break
    return alive


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Within the block, SIGTERM raises SystemExit (so ``finally`` clean-ups run); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Within the block, Ctrl-C (SIGINT) is ignored, so that a clean-up is not cut short; main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
