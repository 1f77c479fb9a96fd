"""A subscriber of the tests' own on the raptor channel."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any, Dict, List, Optional, Type

import redis
from redis.backoff import EqualJitterBackoff, NoBackoff
from redis.retry import Retry

from raptor.consumer.follow import Subscriber
from raptor.keys import DEFAULT_CHANNEL

from .waiting import wait_for


class Collector:
    """Subscribes to the channel and keeps every JSON message; reconnects after outages
    (raptor's own consumer loop, :class:`raptor.consumer.follow.Subscriber`).

    ``with Collector(port) as collector:`` returns once it is subscribed and stops its
    thread at the end. Each message gets ``_received`` (time.monotonic()) added.
    """

    def __init__(self, port: int, channel: str = DEFAULT_CHANNEL, password: Optional[str] = None) -> None:
        self.port = port
        self.channel = channel
        self.password = password
        self.messages: List[Dict[str, Any]] = []
        self._subscriber: Optional[Subscriber] = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Collector:
        self._thread.start()
        wait_for(self._subscribed.is_set, 10, "the collector to subscribe")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def __enter__(self) -> Collector:
        return self if self._thread.is_alive() else self.start()

    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.stop()

    def _run(self) -> None:
        # No retries: redis-py must not reconnect behind the collector's back, or
        # `connections` would not count the reconnects that lose messages. A short
        # backoff: after an outage, the collector is back within 0.2 s of Redis.
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
        )
        self._subscriber = Subscriber(client, self.channel, backoff=EqualJitterBackoff(cap=0.2, base=0.05))
        self._subscriber.run(self._keep, on_connect=self._subscribed.set, stop=self._stop, poll=0.2)

    def _keep(self, message: Dict[str, Any], text: str) -> None:
        message["_received"] = time.monotonic()
        with self._lock:
            self.messages.append(message)

    @property
    def connections(self) -> int:
        """Subscriptions made: more than 1, it reconnected and may have missed messages."""
        return self._subscriber.connections if self._subscriber else 0

    @property
    def non_json(self) -> int:
        return self._subscriber.non_json if self._subscriber else 0

    def snapshot(self) -> List[Dict[str, Any]]:
        """Every message so far, oldest first."""
        with self._lock:
            return list(self.messages)

    def latest_by_name(self) -> Dict[str, Dict[str, Any]]:
        """The last message of each process name."""
        latest: Dict[str, Dict[str, Any]] = {}
        for message in self.snapshot():
            latest[message["name"]] = message
        return latest
