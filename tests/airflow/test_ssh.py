"""The SSH task: the host-key policy, against a real OpenSSH server, and its output, streamed to the task
log with bounded memory."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from dag_factory.airflow.ssh import (
    LINE_LIMIT,
    PINNED_LINES,
    TAIL_LINES,
    InstanceSSHOperator,
    LineReader,
    OutputTail,
)
from dag_factory.plan.guard import StepBounds, guarded, is_own_message
from tests.paths import REPO
from tests.servers.sshd import SshdServer

# a valid ed25519 key that is not the server's
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


class RecordingTI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@pytest.fixture
def ssh_conn(sshd_server: SshdServer, monkeypatch: pytest.MonkeyPatch) -> SshdServer:
    monkeypatch.setenv("AIRFLOW_CONN_SSH_DEFAULT", sshd_server.airflow_conn_json())
    return sshd_server


def _server_key(server: SshdServer) -> str:
    words = (server.root / "ssh_host_ed25519_key.pub").read_text().split()
    return f"{words[0]} {words[1]}"


def _run(server: SshdServer, host_keys: str, host_key: str | None, ti: RecordingTI | None = None) -> str:
    """What the command printed (it leaves it in a file: the task's output goes to its log, not XCom)."""
    marker = server.root / f"ran-{os.urandom(4).hex()}"
    operator = InstanceSSHOperator(
        task_id="nb", ssh_conn_id="ssh_default", remote_host=server.addresses[1],
        command=f"echo ran > {marker}", cmd_timeout=30, host_keys=host_keys, host_key=host_key,
    )  # fmt: skip
    ti = ti or RecordingTI()
    assert operator.execute({"ti": ti, "task_instance": ti}) is None  # nothing for XCom's return_value
    return marker.read_text().strip()


@pytest.mark.integration
def test_accept_new_records_the_key_the_instance_shows(ssh_conn: SshdServer, tmp_path: Path) -> None:
    ti = RecordingTI()
    assert _run(ssh_conn, "accept-new", None, ti) == "ran"
    assert ti.pushed["host_key"] == _server_key(ssh_conn)


@pytest.mark.integration
def test_a_recorded_or_published_key_is_required(ssh_conn: SshdServer) -> None:
    import paramiko

    for policy in ("accept-new", "pinned"):
        assert _run(ssh_conn, policy, _server_key(ssh_conn)) == "ran"
        with pytest.raises(paramiko.BadHostKeyException):
            _run(ssh_conn, policy, OTHER_KEY)


@pytest.mark.integration
def test_a_stale_known_hosts_entry_for_the_recycled_ip_is_ignored(
    ssh_conn: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    host = f"[{ssh_conn.addresses[1]}]:{ssh_conn.port}"
    (tmp_path / ".ssh" / "known_hosts").write_text(f"{host} {OTHER_KEY}\n")
    assert _run(ssh_conn, "pinned", _server_key(ssh_conn)) == "ran"


@pytest.mark.integration
def test_pinned_without_a_published_key_runs_nothing(ssh_conn: SshdServer) -> None:
    from airflow.sdk.exceptions import AirflowException

    with pytest.raises(AirflowException, match=r"no host key to verify 127\.0\.1\.1 with"):
        _run(ssh_conn, "pinned", "")


@pytest.mark.integration
def test_off_checks_nothing(ssh_conn: SshdServer) -> None:
    assert _run(ssh_conn, "off", None) == "ran"


@pytest.mark.integration
def test_a_silent_command_times_out_as_the_provider_says(ssh_conn: SshdServer, tmp_path: Path) -> None:
    """`cmd_timeout` stays the provider's idle timeout: no output for that long ends the task."""
    from airflow.sdk.exceptions import AirflowException

    go = tmp_path / "go"
    os.mkfifo(go)
    operator = InstanceSSHOperator(
        task_id="nb", ssh_conn_id="ssh_default", remote_host=ssh_conn.addresses[1],
        command=f"echo working; exec 3<>{go}; read -r -t 60 _ <&3", cmd_timeout=1, host_keys="off",
    )  # fmt: skip
    ti = RecordingTI()
    try:
        with pytest.raises(AirflowException, match=r"^SSH command timed out$"):
            operator.execute({"ti": ti, "task_instance": ti})
    finally:
        with contextlib.suppress(OSError):  # no reader: the command is gone already
            fifo = os.open(go, os.O_WRONLY | os.O_NONBLOCK)  # the command's read ends
            os.write(fifo, b"go\n")
            os.close(fifo)


# --- output -------------------------------------------------------------------------------------------
def test_lines_are_whole_however_the_bytes_arrive() -> None:
    reader = LineReader()
    text = "première ligne\r\n\n  \nzweite Zeile ✓\nno end".encode()
    lines = [line for i in range(len(text)) for line in reader.feed(text[i : i + 1])]  # a byte per read
    assert lines == ["première ligne", "zweite Zeile ✓"]
    assert reader.feed(b"", final=True) == ["no end"]


def test_a_line_without_an_end_is_passed_on_in_pieces() -> None:
    reader = LineReader()
    pieces = [line for _ in range(5) for line in reader.feed(b"=" * (LINE_LIMIT // 2))]
    assert pieces == ["=" * LINE_LIMIT, "=" * LINE_LIMIT]
    assert reader.feed(b"", final=True) == ["=" * (LINE_LIMIT // 2)]


def test_the_tail_keeps_the_last_lines_and_the_pinned_ones_in_order() -> None:
    tail = OutputTail(pin=is_own_message)
    for i in range(1000):
        tail.add(f"dag-factory: message {i}" if i % 10 == 0 else f"output {i}")
    # the last PINNED_LINES messages, those before the last TAIL_LINES lines, then those lines
    before = [f"dag-factory: message {i}" for i in range(1000 - PINNED_LINES * 10, 1000 - TAIL_LINES, 10)]
    last = [
        f"dag-factory: message {i}" if i % 10 == 0 else f"output {i}" for i in range(1000 - TAIL_LINES, 1000)
    ]
    assert tail.text().splitlines() == before + last


# A chatty notebook step, under the real guard. It says it started, then waits until the test has seen
# that line in the task log (an event: the test writes to a FIFO; bounded by read -t). Then
# - PACED lines of PACED_SIZE bytes, one at a time as papermill logs a cell's output (each its own SSH
#   packet), on stdout and stderr by turns: the provider's `+=` per packet is quadratic here, and its wait
#   for the channel's event misses a wake-up when both streams get data at once (it hung);
# - BURST short lines at once, half on each stream;
# - the launcher's message, more output than the tail keeps after it, and a notebook error's exit status.
PACED, PACED_SIZE, BURST = 10_000, 4_000, 200_000
AFTER = TAIL_LINES * 5
PRODUCER = """import os, sys, time
pad = "x" * int(sys.argv[2])
for i in range(int(sys.argv[1])):
    os.write(1 + i % 2, f"chatty line {i} {pad}\\n".encode())
    time.sleep(0.0005)  # the notebook computing; not a wait of the test
"""
CHATTY = """exec 3<>{go}
echo "chatty: started" >&2
read -r -t 120 _ <&3 || exit 1
python3 {producer} {paced} {size}
seq -f "chatty line %.0f of the notebook's stdout" 1 {half} &
seq -f "chatty line %.0f of papermill's log on stderr" 1 {half} >&2
wait
echo "dag-factory: the notebook raised ValueError: boom" >&2
seq -f "chatty line %.0f after the launcher's message" 1 {after} >&2
exit 85"""
TASK_DEADLINE_S = 120
# measured: about 7 s of CPU and 4-7 MB, loaded machine or not; the provider's aggregation, where it does
# not hang (the paced part alone, on one stream), took about 15 s and 120 MB. The output is 49 MB.
CPU_BOUND_S = 20.0
RSS_BOUND_KB = 16 * 1024


class LogReader:
    """Reads a task process's JSON log lines as the supervisor does, in a thread: counts the chatty
    lines, keeps the last events, and says when the first line of the command reached the log."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.started = threading.Event()
        self.chatty = 0
        self.last: deque[bytes] = deque(maxlen=50)
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            if b'"event":"chatty line ' in raw:
                self.chatty += 1
            elif b'"event":"chatty: started"' in raw:
                self.started.set()
            self.last.append(raw)

    def join(self) -> None:
        self._thread.join(timeout=30)

    def tail(self) -> str:
        return b"".join(self.last).decode(errors="replace")


@pytest.fixture
def task_process(ssh_conn: SshdServer, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], LogReader]]:
    go = tmp_path / "go"
    os.mkfifo(go)
    producer = tmp_path / "producer.py"
    producer.write_text(PRODUCER)
    body = CHATTY.format(go=go, producer=producer, paced=PACED, size=PACED_SIZE, half=BURST // 2, after=AFTER)
    command = guarded(body, StepBounds(str(tmp_path / "work"), "nb_chatty", 300, 3600))
    argv = [sys.executable, "-m", "tests.airflow.ssh_task_process", str(tmp_path / "result.json"),
            ssh_conn.addresses[1], command]  # fmt: skip
    child = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert child.stdout is not None
    try:
        yield child, LogReader(child.stdout)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)


@pytest.mark.integration
def test_chatty_notebook_streams_with_bounded_memory(
    task_process: tuple[subprocess.Popen[bytes], LogReader], tmp_path: Path
) -> None:
    child, log = task_process
    assert log.started.wait(timeout=60), f"the command's first line never reached the log:\n{log.tail()}"
    assert child.poll() is None  # the task is still running: it waits for this test
    fifo = os.open(tmp_path / "go", os.O_WRONLY | os.O_NONBLOCK)  # the command holds it open
    os.write(fifo, b"go\n")
    os.close(fifo)
    with contextlib.suppress(subprocess.TimeoutExpired):  # said below, without the command's text
        child.wait(timeout=TASK_DEADLINE_S)
    assert child.returncode is not None, (
        f"the step had not ended after {TASK_DEADLINE_S} s ({log.chatty} lines logged)"
    )
    log.join()
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["raised"] == "AirflowFailException", log.tail()
    assert result["message"] == (
        "notebook nb/chatty.ipynb failed (exit status 85: the notebook raised ValueError: boom): "
        "the notebook's own error: not retried (set notebooks[].retries to retry it)"
    )
    assert log.chatty == PACED + BURST + AFTER  # every line reached the task log
    assert result["xcom"] == {}
    assert result["cpu_s"] < CPU_BOUND_S, result
    assert result["rss_growth_kb"] < RSS_BOUND_KB, result


@pytest.mark.integration
def test_a_missing_notebook_over_ssh_fails_at_once_and_names_it(ssh_conn: SshdServer, tmp_path: Path) -> None:
    """The SageMaker backend's step (GuardedSSHOperator, the guard, the product's notebook script) for a
    notebook the deployed project lacks: failed for good on the first try, whatever the retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from dag_factory.airflow.operators import GuardedSSHOperator, StepPolicy
    from dag_factory.plan.scripts import HostLayout, notebook_command

    workdir = tmp_path / "work"
    (workdir / "project" / "notebooks").mkdir(parents=True)
    layout = HostLayout(workdir=str(workdir), activate="true", sync="true", install="true")
    out = str(tmp_path / "out.ipynb")
    script = notebook_command(layout, "notebooks/02_sumary.ipynb", out, "python3", {}, "{}")
    operator = GuardedSSHOperator(
        task_id="nb_02_sumary", ssh_conn_id="ssh_default", remote_host=ssh_conn.addresses[1],
        command=guarded(script, StepBounds(str(workdir), "nb_02_sumary", 600, 3600)), cmd_timeout=60,
        host_keys="off", policy=StepPolicy(
            step_label="notebook notebooks/02_sumary.ipynb", infra_retries=3, notebook_retries=3
        ),
    )  # fmt: skip
    ti = RecordingTI()
    ti.try_number = 1  # type: ignore[attr-defined]
    with pytest.raises(AirflowFailException) as failed:
        operator.execute({"ti": ti, "task_instance": ti})
    assert str(failed.value) == (
        "notebook notebooks/02_sumary.ipynb failed (exit status 86: missing input: the notebook "
        "notebooks/02_sumary.ipynb is not in the deployed project): a missing input: not retried (deploy the "
        "project with it, then clear the task)"
    )
