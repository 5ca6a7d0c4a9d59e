"""The SSH task of a notebook instance: the platform's host-key policy (`ssh.host_keys`), output streamed.

Every run gets a new instance on a recycled private IP, so a known_hosts file cannot help: a key
stored for that IP last week belongs to another instance. The policies:

- `accept-new` (default): the group's first SSH task (prepare) accepts the key the new instance shows
  and records it (XCom `host_key`); every later SSH task of the group requires that same key. A host
  that impersonates the instance after the first connection is refused; one that does so before it
  is not (trust on first use);
- `pinned`: the instance's lifecycle configuration publishes its key to
  `s3://<code bucket>/_host_keys/<instance>.pub`; resolve_ip reads it and every SSH task requires it;
- `off`: no check at all (any host answering on the IP gets the commands and the code).

A notebook's output can be millions of lines over hours. The provider's SSHOperator keeps all of it in
the worker's memory (concatenated chunk by chunk: quadratic CPU) and pushes stdout to XCom; here each
line goes to the task log as it arrives (stdout at info, stderr at warning, as the provider logs them),
only a tail of stderr is kept for the failure's verdict, and nothing goes to XCom. The full log stays on
the output side (papermill's log beside the executed notebook: dag_factory.plan.scripts).
"""

from __future__ import annotations

import codecs
import threading
import time
from base64 import decodebytes
from collections import deque
from collections.abc import Callable
from typing import Any

from airflow.providers.ssh.hooks.ssh import CMD_TIMEOUT
from airflow.providers.ssh.operators.ssh import SSHOperator
from airflow.sdk.exceptions import AirflowException

from dag_factory.airflow.tasks import HOST_KEY_XCOM

POLICIES = ("accept-new", "pinned", "off")

READ_SIZE = 64 * 1024  # per recv
LINE_LIMIT = 16 * 1024  # a longer line (one with no end: a progress bar) is logged in pieces
TAIL_LINES = 200  # stderr lines a step keeps for its failure summary
PINNED_LINES = 50  # lines kept apart from the tail (the guard's own), however much output follows them


def parse_host_key(text: str) -> Any:
    """`<type> <base64>` -> a paramiko key."""
    import paramiko

    words = text.split()
    if len(words) < 2:
        raise AirflowException(f"not an ssh host key (expected '<type> <base64>'): {text!r}")
    return paramiko.PKey.from_type_string(words[0], decodebytes(words[1].encode("ascii")))


class LineReader:
    """Bytes as they arrive -> whole lines, decoded incrementally (a character split across two reads
    is decoded once both halves are in); blank lines are dropped."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._partial = ""

    def feed(self, data: bytes, final: bool = False) -> list[str]:
        lines = (self._partial + self._decoder.decode(data, final)).split("\n")
        self._partial = "" if final else lines.pop()
        if len(self._partial) >= LINE_LIMIT:
            lines.append(self._partial)
            self._partial = ""
        return [line.rstrip("\r") for line in lines if line.strip()]


class OutputTail:
    """The last `TAIL_LINES` lines of a stream, and the last `PINNED_LINES` that `pin` selects however many
    came after them; in the order they came."""

    def __init__(self, pin: Callable[[str], bool] | None = None) -> None:
        self._pin = pin
        self._last: deque[tuple[int, str]] = deque(maxlen=TAIL_LINES)
        self._pinned: deque[tuple[int, str]] = deque(maxlen=PINNED_LINES)
        self._count = 0

    def add(self, line: str) -> None:
        self._count += 1
        entry = (self._count, line)
        self._last.append(entry)
        if self._pin is not None and self._pin(line):
            self._pinned.append(entry)

    def text(self) -> str:
        return "\n".join(line for _, line in sorted({*self._pinned, *self._last}))


class _Arrivals:
    """The event paramiko's channel buffers set when data or the end of a stream arrives; their
    `clear` (all read) is left to the reader, which clears before it looks."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def set(self) -> None:
        self.event.set()

    def clear(self) -> None:
        pass


class _ChannelLines:
    """A channel's stdout and stderr, read as they come: each line logged (stdout at info, stderr at
    warning, as the provider logs them), stderr's kept in `stderr_tail`."""

    def __init__(self, channel: Any, log: Any, stderr_tail: OutputTail) -> None:
        self.channel = channel
        self.log = log
        self.stderr_tail = stderr_tail
        self.out, self.err = LineReader(), LineReader()

    def read(self) -> bool:
        """Read once from each stream that has data (neither starves the other; `follow` reads again
        before it waits, so the window stays open); whether there was any."""
        got_out, got_err = self.channel.recv_ready(), self.channel.recv_stderr_ready()
        if got_out:
            self._stdout(self.out.feed(self.channel.recv(READ_SIZE)))
        if got_err:
            self._stderr(self.err.feed(self.channel.recv_stderr(READ_SIZE)))
        return bool(got_out or got_err)

    def follow(self, timeout: float | None) -> bool:
        """Read until the command has exited and all is read; True if it printed nothing for `timeout`.

        Waits on an event the channel's buffers set when data or the end comes, not on the channel's
        own select pipe: that one misses a wake-up when stdout and stderr get data at the same moment
        (paramiko's OrPipe takes no lock), and once the window is full nothing wakes it again.
        """
        channel = self.channel
        arrived = _Arrivals()
        channel.in_buffer.set_event(arrived)
        channel.in_stderr_buffer.set_event(arrived)
        last_output = time.monotonic()
        while True:
            arrived.event.clear()  # before looking: what comes after the look sets it again
            if self.read():
                last_output = time.monotonic()
                continue
            if channel.exit_status_ready() or channel.closed:
                return False
            waited = time.monotonic() - last_output
            if timeout is not None and waited >= timeout:
                return True
            arrived.event.wait(None if timeout is None else timeout - waited)

    def flush(self) -> None:
        """The last lines, if they had no line end."""
        self._stdout(self.out.feed(b"", final=True))
        self._stderr(self.err.feed(b"", final=True))

    def _stdout(self, lines: list[str]) -> None:
        for line in lines:
            self.log.info(line)

    def _stderr(self, lines: list[str]) -> None:
        for line in lines:
            self.log.warning(line)
            self.stderr_tail.add(line)


def stream_command(
    client: Any,
    command: str,
    *,
    timeout: float | None,
    environment: dict[str, str] | None,
    get_pty: bool,
    log: Any,
    stderr_tail: OutputTail,
    shown: str | None = None,
) -> int:
    """Run `command`, logging its lines as they come; its exit status (-1: the session ended without one).

    `timeout` is the provider's idle timeout (no output for that long: AirflowException, as it raises);
    None waits as long as the command runs (the guard bounds it on the host). `shown`: what the log says
    runs, instead of the whole command (a step's script is kilobytes of guard).
    """
    log.info("Running command: %s", shown or command)
    stdin, stdout, _ = client.exec_command(
        command=command, get_pty=get_pty, timeout=timeout, environment=environment
    )
    channel = stdout.channel
    stdin.close()
    channel.shutdown_write()
    lines = _ChannelLines(channel, log, stderr_tail)
    try:
        timed_out = lines.follow(timeout)
    finally:
        lines.flush()
        channel.close()
    if timed_out:
        raise AirflowException("SSH command timed out")
    return int(channel.recv_exit_status())


class InstanceSSHOperator(SSHOperator):
    """SSHOperator that verifies the instance's host key by the platform's policy and streams the
    command's output to the task log (see module doc)."""

    template_fields = (*SSHOperator.template_fields, "host_key")

    def __init__(self, *, host_keys: str, host_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use_host_keys(host_keys, host_key)

    def use_host_keys(self, host_keys: str, host_key: str | None) -> None:
        if host_keys not in POLICIES:
            raise ValueError(f"host_keys must be one of {', '.join(POLICIES)}, got {host_keys!r}")
        self.host_keys = host_keys
        self.host_key = host_key  # templated: the key to require, from an earlier task's XCom
        self._context: Any = None

    @property
    def records_host_key(self) -> bool:
        return self.host_keys == "accept-new" and not self.host_key

    def execute(self, context: Any = None) -> Any:
        self._context = context
        super().execute(context)
        return None  # the output is in the task log, not in XCom

    def stderr_tail(self) -> OutputTail:
        """What of the command's stderr `raise_for_status` is given."""
        return OutputTail()

    def command_shown(self, command: str) -> str:
        """What the task log says runs."""
        return command

    def command_timeout(self) -> float | None:
        """The idle timeout, resolved as the provider does: the operator's, the connection's, 10 s."""
        for timeout in (self.cmd_timeout, self.hook.cmd_timeout):
            if timeout is None or isinstance(timeout, int | float):  # else the provider's "not set"
                return timeout
        return CMD_TIMEOUT

    def run_ssh_client_command(self, ssh_client: Any, command: str, context: Any = None) -> bytes:
        tail = self.stderr_tail()
        exit_status = stream_command(
            ssh_client, command, timeout=self.command_timeout(), environment=self.environment,
            get_pty=self.get_pty, log=self.log, stderr_tail=tail, shown=self.command_shown(command),
        )  # fmt: skip
        self.raise_for_status(exit_status, tail.text().encode("utf-8"), context=context)
        return b""

    def get_ssh_client(self) -> Any:
        hook = self.hook
        if self.host_keys == "off" or self.records_host_key:
            hook.no_host_key_check = True
            hook.allow_host_key_change = True  # never trust ~/.ssh/known_hosts: the IP is recycled
        elif not self.host_key:
            raise AirflowException(
                f"no host key to verify {hook.remote_host} with (ssh.host_keys: {self.host_keys}); "
                "the task that provides it did not run or published none"
            )
        else:
            hook.host_key = parse_host_key(self.host_key)
            hook.no_host_key_check = False
            # known_hosts is skipped (a stale entry for the recycled IP would refuse the right instance);
            # the key added for this host is still required: paramiko refuses any other
            hook.allow_host_key_change = True
            self.log.info("%s must present host key %s", hook.remote_host, self.host_key)
        client = super().get_ssh_client()
        if self.records_host_key and self._context is not None:
            key = client.get_transport().get_remote_server_key()
            recorded = f"{key.get_name()} {key.get_base64()}"
            self.log.info("host key of %s, required from now on in this run: %s", hook.remote_host, recorded)
            self._context["ti"].xcom_push(key=HOST_KEY_XCOM, value=recorded)
        return client
