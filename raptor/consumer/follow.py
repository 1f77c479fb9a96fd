"""Following the channel: subscribe, load the snapshots, apply every message.

Subscribing *before* loading means no message falls between the two; a message
older than the snapshot is recognised by its seq and dropped. After a Redis
restart the follower reconnects and reloads everything; after a gap or a
listener restart it reloads that one host.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Dict, Optional

import redis
from redis.backoff import EqualJitterBackoff

from .fleet import Apply, Fleet

log = logging.getLogger("raptor.follow")
RELOAD_EVERY = 30.0  # seconds: picks up hosts that publish nothing, and refresh ages
MESSAGE_DEADLINE = 30.0  # seconds a message that has begun to arrive may take to arrive whole


def parse_message(data: Any) -> Optional[Dict[str, Any]]:
    """A channel message as a dict, or None for anything else (other subscribers
    publish plain strings such as "flush")."""
    try:
        message = json.loads(data)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def next_message(pubsub: Any, wait: float) -> Optional[Dict[str, Any]]:
    """The next pub/sub message, or None when none begins to arrive within ``wait``.

    Waiting and reading are split on purpose. redis-py 8 applies get_message()'s
    timeout to every socket read of a message; when a message arrives in parts
    further apart than that (a busy Redis writes a large MULTI/EXEC's output in
    pieces), it reconnects behind the caller's back and drops what it had buffered
    and what was published meanwhile. Here only the wait is short: a message that
    has begun is read to its end.
    """
    if not pubsub.connection.can_read(timeout=wait):
        return None
    message: Optional[Dict[str, Any]] = pubsub.get_message(timeout=MESSAGE_DEADLINE)
    return message


def make_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=3.0, socket_keepalive=True, health_check_interval=0)


class Follower:
    def __init__(self, client: redis.Redis, channel: str, fleet: Optional[Fleet] = None) -> None:
        self.client = client
        self.channel = channel
        self.fleet = fleet or Fleet()
        self.connected = False
        self.messages = 0
        self.resyncs = 0
        self.last_error: Optional[str] = None
        self._backoff = EqualJitterBackoff(base=0.1, cap=2.0)

    def run(
        self,
        on_change: Callable[[Dict[str, Any]], None] = lambda message: None,
        on_idle: Callable[[], None] = lambda: None,
        should_stop: Callable[[], bool] = lambda: False,
        poll: float = 0.25,
    ) -> None:
        failures = 0
        while not should_stop():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self.channel)
                self.fleet.load(self.client)
                self.connected, self.last_error, failures = True, None, 0
                on_idle()
                self._pump(pubsub, on_change, on_idle, should_stop, poll)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
                self.connected = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                failures += 1
                on_idle()
                time.sleep(self._backoff.compute(failures))
            finally:
                pubsub.close()

    def _pump(
        self,
        pubsub: Any,
        on_change: Callable[[Dict[str, Any]], None],
        on_idle: Callable[[], None],
        should_stop: Callable[[], bool],
        poll: float,
    ) -> None:
        next_reload = time.monotonic() + RELOAD_EVERY
        while not should_stop():
            raw = next_message(pubsub, poll)
            if raw is not None:
                self.handle(raw["data"], on_change)
            else:
                on_idle()
            if time.monotonic() >= next_reload:
                self.fleet.load(self.client)
                next_reload = time.monotonic() + RELOAD_EVERY

    def handle(self, data: Any, on_change: Callable[[Dict[str, Any]], None]) -> None:
        message = parse_message(data)
        if message is None:
            return
        self.messages += 1
        verdict = self.fleet.apply(message)
        if verdict == Apply.RESYNC:
            self.resyncs += 1
            self.fleet.load(self.client, [message["host"]])
        if verdict in (Apply.APPLIED, Apply.RESYNC):
            on_change(message)
