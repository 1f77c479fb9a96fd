"""Issue 13, the publisher's half of the history: every message it publishes is in
the fleet's and the host's streams, in the same order; the channel is unchanged; a
process is never sent back in time; one flapping host cannot evict another's history."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import pytest
import redis

from harness import Collector, ProgramSpec, RedisServer, Supervisords, settled, velociraptor_names, wait_for
from raptor import keys
from raptor.messages import message_from_entry

from .test_listener_inprocess import Running, environ, state

pytestmark = pytest.mark.integration

# The channel's messages, field for field and in this order, as before the history
# (Velociraptor's dashboard reads them).
STATE_FIELDS = [
    "event", "host", "id", "name", "app_name", "version", "config_name", "hash", "proc_name", "port", "group",
    "jsname", "statename", "state", "pid", "exitstatus", "description", "spawnerr", "now", "start_time",
    "stop_time", "logfile", "stdout_logfile", "stderr_logfile", "from_state", "seq", "run_id", "resync",
]  # fmt: skip
LOG_FIELDS = ("logfile", "stdout_logfile", "stderr_logfile")


def entries(client: redis.Redis, key: str) -> List[Tuple[str, Dict[str, str]]]:
    raw: List[Tuple[bytes, Dict[bytes, bytes]]] = client.xrange(key)  # type: ignore[assignment]
    return [(entry_id.decode(), {k.decode(): v.decode("utf-8") for k, v in fields.items()}) for entry_id, fields in raw]


def as_in_history(message: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in message.items() if k not in LOG_FIELDS and k != "_received"}


def test_every_message_is_in_both_streams_in_publish_order(
    redis_server: RedisServer, collector: Collector, start_supervisord: Supervisords
) -> None:
    sup = start_supervisord(velociraptor_names(30), redis_server.url)
    client = settled(sup, redis_server)
    assert sup.ctl("restart", "all").returncode == 0
    wait_for(sup.programs_running, 30, "programs to run again")
    client = settled(sup, redis_server)
    wait_for(
        lambda: len(entries(client, keys.FLEET_HISTORY)) == len(collector.snapshot()),
        5,
        "as many history entries as messages",
    )
    messages = collector.snapshot()
    assert len(messages) >= 4 * 30, "the restart's transitions"
    for message in messages:
        assert list(message)[: len(STATE_FIELDS)] == STATE_FIELDS and len(message) == len(STATE_FIELDS) + 1

    fleet = entries(client, keys.FLEET_HISTORY)
    host = entries(client, keys.history_key(sup.hostname))
    assert [fields for _, fields in fleet] == [fields for _, fields in host]
    restored = [message_from_entry(fields) for _, fields in fleet]
    assert [{k: v for k, v in m.items() if k != "expected"} for m in restored] == [as_in_history(m) for m in messages]
    exits = [m for m in restored if m["event"] == "PROCESS_STATE_EXITED"]
    assert all(m["expected"] is not None for m in exits), "supervisord's word on each exit is kept"


def test_the_start_up_resync_never_sends_a_process_back_in_time(
    redis_server: RedisServer, collector: Collector, start_supervisord: Supervisords
) -> None:
    """supervisord starts its programs and the listener together: the listener's first
    resync reads programs already RUNNING, and then receives the older STARTING and
    RUNNING events supervisord queued for it meanwhile."""
    names = velociraptor_names(100)
    # RUNNING as soon as spawned: all RUNNING by the listener's first resync.
    sup = start_supervisord(names, redis_server.url, program=ProgramSpec(options={"startsecs": "0"}))
    settled(sup, redis_server)
    client = redis_server.client()

    def meta(field: str) -> int:
        return int(client.hget(keys.meta_key(sup.hostname), field) or 0)

    # The events supervisord held for the listener until it was RUNNING (startsecs),
    # each program's STARTING and RUNNING, have arrived and what they led to is received.
    wait_for(lambda: meta(keys.META_EVENTS) >= 2 * len(names), 10, "the start-up events to reach the listener")
    wait_for(lambda: max(m["seq"] for m in collector.snapshot()) == meta(keys.META_SEQ), 10, "the last message")
    lifecycle = {"STOPPED": 0, "STARTING": 1, "BACKOFF": 1, "RUNNING": 2}
    backwards = []
    for name in names:
        seen = [m["statename"] for m in collector.snapshot() if m["name"] == name]
        assert seen and seen[-1] == "RUNNING", (name, seen)
        ranks = [lifecycle[s] for s in seen]
        if ranks != sorted(ranks):
            backwards.append((name, seen))
    assert not backwards, f"{len(backwards)} processes went back in time, e.g. {backwards[:3]}"
    history = [message_from_entry(f) for _, f in entries(redis_server.client(), keys.history_key(sup.hostname))]
    for name in names:
        ranks = [lifecycle[m["statename"]] for m in history if m["name"] == name]
        assert ranks == sorted(ranks), (name, ranks)


def flaps(name: str, count: int, first_serial: int) -> List[str]:
    """*count* transitions of a process crashing and restarting, each from the last."""
    cycle = [("STARTING", "EXITED", None), ("RUNNING", "STARTING", 1000), ("EXITED", "RUNNING", 1000)]
    frames = []
    for i in range(count):
        to_state, from_state, pid = cycle[i % 3]
        frames.append(state(to_state, name, from_state, first_serial + i, None if pid is None else pid + i // 3))
    return frames


def published(client: redis.Redis, host: str) -> int:
    return int(client.hget(keys.meta_key(host), keys.META_SEQ) or 0)


def test_a_flapping_host_does_not_evict_another_hosts_history(redis_server: RedisServer) -> None:
    client = redis_server.client()
    retention = {"RAPTOR_HISTORY_MAXLEN": "1000"}
    calm = Running(environ(redis_server, HOSTNAME="calm", **retention))
    try:
        calm.send(*flaps("calm-app", 300, 1))
        wait_for(lambda: client.xlen(keys.history_key("calm")) == 300, 10, "the calm host's 300 transitions")
    finally:
        assert calm.close(10) == 0
    calm_before = entries(client, keys.history_key("calm"))

    flapper = Running(environ(redis_server, HOSTNAME="flapper", **retention))
    try:
        for sent in range(0, 50_000, 1000):  # in chunks, each published before the next (no coalescing)
            flapper.send(*flaps("flappy", 1000, 1 + sent))
            goal = sent + 1000
            wait_for(lambda goal=goal: published(client, "flapper") >= goal, 30, f"{goal} transitions published")
    finally:
        assert flapper.close(30) == 0

    assert entries(client, keys.history_key("calm")) == calm_before, "the calm host's history is whole"
    kept = client.xlen(keys.history_key("flapper"))
    # XADD MAXLEN ~ trims whole nodes (100 entries by default): a little over the limit.
    assert 1000 <= kept <= 1000 + 200, kept
    last = message_from_entry(entries(client, keys.history_key("flapper"))[-1][1])
    assert last["seq"] == 50_000


def test_every_message_carries_the_log_paths_supervisord_reports(
    redis_server: RedisServer, collector: Collector, start_supervisord: Supervisords
) -> None:
    """Issue 25, finding 1: Velociraptor's dashboard replaces its model of a process with
    each message, so each must carry the log paths getAllProcessInfo() gives: the
    start-up's STARTING and RUNNING (queued before the listener's first resync), and a
    restart right after the snapshot first matches (before any settle resync)."""
    names = velociraptor_names(2)
    sup = start_supervisord(names, redis_server.url)
    settled(sup, redis_server)
    assert sup.ctl("restart", *names).returncode == 0
    wait_for(sup.programs_running, 30, "the programs to run again")
    truth = sup.truth()
    assert all(truth[name]["stdout_logfile"] and truth[name]["stderr_logfile"] for name in names), truth

    def restarted() -> bool:
        last = {m["name"]: m for m in collector.snapshot()}
        return all(n in last and (last[n]["statename"], last[n]["pid"]) == ("RUNNING", truth[n]["pid"]) for n in names)

    wait_for(restarted, 10, "the restart's RUNNING messages")
    messages = [m for m in collector.snapshot() if m["name"] in names]
    events = [m["event"] for m in messages]
    assert events.count("PROCESS_STATE_RUNNING") >= 2 * len(names), events
    wrong = [
        f"{m['name']} {m['event']} seq {m['seq']}: {field}={m[field]!r} want {truth[m['name']][field]!r}"
        for m in messages
        for field in LOG_FIELDS
        if m[field] != truth[m["name"]][field]
    ]
    assert not wrong, f"{len(wrong)} of {3 * len(messages)} log fields wrong: {wrong[:4]}"
