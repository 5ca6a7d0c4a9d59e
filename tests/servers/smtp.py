"""A mail server on loopback that keeps what it receives: the spec's `notify` emails, as Airflow's smtp
provider sends them (aiosmtpd, in a thread of the test process)."""

from __future__ import annotations

import contextlib
import email
import threading
import time
from collections.abc import Callable, Iterator
from email.message import Message
from typing import Any

from tests.servers.ports import free_port

SENDER = "airflow@example.com"


class Mailbox:
    """What the server received, in order; `wait_for` blocks until a message matches (or its deadline)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[Message] = []
        self._received = threading.Condition()

    @property
    def connection_uri(self) -> str:
        """Airflow's `smtp_default` connection for this server: plain SMTP, no retries to wait through."""
        return (
            f"smtp://127.0.0.1:{self.port}?disable_ssl=true&disable_tls=true&retry_limit=0"
            f"&from_email={SENDER.replace('@', '%40')}"
        )

    def subjects(self) -> list[str]:
        with self._received:
            return [str(m["Subject"]) for m in self.messages]

    @staticmethod
    def body(message: Message) -> str:
        """The text of a mail as the smtp provider sends it (the html part of a multipart message)."""
        part = message.get_payload(0) if message.is_multipart() else message
        assert isinstance(part, Message)
        return bytes(part.get_payload(decode=True)).decode()

    def wait_for(self, matches: Callable[[Message], bool], timeout: float = 30) -> Message:
        deadline = time.monotonic() + timeout
        with self._received:
            while True:
                found = next((m for m in self.messages if matches(m)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such mail within {timeout:.0f}s; received: {self.subjects()}")
                self._received.wait(left)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self._received:
            self.messages.append(message)
            self._received.notify_all()
        return "250 OK"


@contextlib.contextmanager
def running_mailbox() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    mailbox = Mailbox(free_port())
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port)
    controller.start()  # returns once the server answers
    try:
        yield mailbox
    finally:
        controller.stop()
