"""What the tests compare: the stored snapshot and the latest messages against
supervisord's own answer, and waiting until they agree."""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Protocol

import redis

from raptor.keys import snapshot_key

from .redis_server import RedisServer
from .supervisord import Supervisord
from .waiting import wait_for


class LatestMessages(Protocol):
    """A Collector, or a view of one (one host's messages)."""

    def latest_by_name(self) -> Dict[str, Dict[str, Any]]: ...


def stored_snapshot(client: redis.Redis, host: str) -> Dict[str, Dict[str, Any]]:
    """The snapshot the listener keeps for *host*: process name -> its record."""
    raw: Dict[bytes, bytes] = client.hgetall(snapshot_key(host))  # type: ignore[assignment]
    return {k.decode(): json.loads(v) for k, v in raw.items()}


def snapshot_differences(client: redis.Redis, host: str, sup: Supervisord) -> List[str]:
    """What differs between *host*'s snapshot and supervisord's getAllProcessInfo()."""
    stored = stored_snapshot(client, host)
    truth = sup.truth()
    problems = [f"missing {name}" for name in truth if name not in stored]
    problems += [f"extra {name}" for name in stored if name not in truth]
    for name, info in truth.items():
        if name in stored:
            mine = stored[name]
            if (mine["statename"], mine["pid"]) != (info["statename"], info["pid"]):
                problems.append(
                    f"{name}: stored {mine['statename']}/{mine['pid']} real {info['statename']}/{info['pid']}"
                )
    return problems


def latest_message_differences(collector: LatestMessages, sup: Supervisord) -> List[str]:
    """Processes whose last message is not what supervisord says of them now."""
    latest = collector.latest_by_name()
    problems = []
    for name, info in sup.truth().items():
        message = latest.get(name)
        if message is None:
            problems.append(f"no message for {name}")
        elif (message.get("statename"), message.get("pid")) != (info["statename"], info["pid"]):
            problems.append(
                f"{name}: last message {message.get('statename')}/{message.get('pid')} real {info['statename']}"
            )
    return problems


def settled(sup: Supervisord, redis_server: RedisServer) -> redis.Redis:
    """A client of *redis_server*, once sup's programs run and its snapshot matches them."""
    wait_for(sup.programs_running, 60, "programs to run")
    client = redis_server.client()
    wait_for(lambda: not snapshot_differences(client, sup.hostname, sup), 5, "snapshot after start")
    return client


def measure_convergence(client: redis.Redis, sup: Supervisord, collector: LatestMessages, limit: float) -> float:
    """Seconds until both the snapshot and every process' latest message match
    supervisord; past *limit*, fail with the first differences."""
    started = time.monotonic()
    try:
        wait_for(
            lambda: (
                not snapshot_differences(client, sup.hostname, sup) and not latest_message_differences(collector, sup)
            ),
            limit,
            "snapshot and latest messages to match supervisord",
        )
    except AssertionError as exc:
        details = snapshot_differences(client, sup.hostname, sup) + latest_message_differences(collector, sup)
        raise AssertionError(f"{exc}; differences: {details[:10]}") from None
    return time.monotonic() - started
