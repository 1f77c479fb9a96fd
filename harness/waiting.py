"""Waiting with a deadline, and free loopback ports."""

from __future__ import annotations

import socket
import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A loopback TCP port nobody listens on (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll *condition* until it returns something truthy and return that.

    After *timeout* s, fail with an AssertionError naming *what* was awaited and the
    last exception the condition raised (it may touch a server that is coming up).
    """
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_error!r})")
        time.sleep(interval)
