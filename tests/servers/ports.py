"""Free TCP ports for the servers the tests start."""

from __future__ import annotations

import socket
from collections.abc import Sequence


def free_port(addresses: Sequence[str] = ("127.0.0.1",)) -> int:
    """A port that was free a moment ago on every one of ``addresses`` (a server listening on several
    loopback addresses needs the same port on each)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        if all(_bindable(address, port) for address in addresses[1:]):
            return port
    raise RuntimeError(f"no port free on all of {list(addresses)}")


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True
