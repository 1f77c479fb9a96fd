"""The sink against a real Redis, with a stand-in for supervisord's RPC."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Dict, List, Optional

import pytest

from raptor.config import ListenerConfig
from raptor.events import GroupChange, ProcessStateChange
from raptor.outbox import Outbox
from raptor.redis_sink import RedisSink, make_redis_client

from .support import Collector, RedisServer, stored_snapshot, wait_for


class StubRPC:
    server_url = "unix:///stub.sock"

    def __init__(self, infos: Optional[List[Dict[str, Any]]]) -> None:
        self.infos = infos
        self.calls = 0

    def get_all_process_info(self) -> List[Dict[str, Any]]:
        self.calls += 1
        if self.infos is None:
            raise ConnectionRefusedError("supervisord is reloading")
        return self.infos


def info(name: str, statename: str, pid: int) -> Dict[str, Any]:
    codes = {"RUNNING": 20, "STOPPED": 0}
    return {"name": name, "group": name, "statename": statename, "state": codes[statename], "pid": pid,
            "start": 100, "stop": 0, "now": 200, "description": "d", "spawnerr": "", "exitstatus": 0,
            "logfile": "/l", "stdout_logfile": "/l", "stderr_logfile": ""}  # fmt: skip


def make_sink(redis_server: RedisServer, rpc: Optional[StubRPC], outbox: Outbox) -> RedisSink:
    config = ListenerConfig.from_env({"SUPERVISOR_ENABLED": "1", "REDIS_URL": redis_server.url, "HOSTNAME": "h"})
    sink = RedisSink(config, outbox, make_redis_client(config), rpc, settle_delay=0.1)  # type: ignore[arg-type]
    sink.start()
    return sink


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


def test_start_resync_diffs_against_what_redis_holds(redis_server: RedisServer, collector: Collector, outbox) -> None:
    client = redis_server.client()
    client.hset("host_procs:h", mapping={
        "same": json.dumps(info("same", "RUNNING", 1)),
        "changed": json.dumps(info("changed", "RUNNING", 2)),
        "gone": json.dumps(info("gone", "RUNNING", 3)),
        "junk": "not json",
    })  # fmt: skip
    rpc = StubRPC([info("same", "RUNNING", 1), info("changed", "RUNNING", 9), info("new", "STOPPED", 0)])
    sink = make_sink(redis_server, rpc, outbox)
    try:
        wait_for(lambda: set(stored_snapshot(client, "h")) == {"same", "changed", "new"}, 5, "the resync")
        messages = wait_for(lambda: len(collector.snapshot()) >= 3 and collector.snapshot(), 5, "corrections")
        assert {(m["name"], m["event"]) for m in messages} == {
            ("changed", "PROCESS_STATE_RUNNING"),
            ("new", "PROCESS_STATE_STOPPED"),
            ("gone", "PROCESS_GROUP_REMOVED"),
        }
        assert all(m["resync"] for m in messages)
        assert [m["seq"] for m in messages] == [1, 2, 3]
        assert next(m for m in messages if m["name"] == "changed")["from_state"] == "RUNNING"
        meta = client.hgetall("host_meta:h")
        assert meta[b"seq"] == b"3"
        assert meta[b"run_id"].decode() == sink.run_id
        assert 0 < client.ttl("host_procs:h") <= 600
    finally:
        sink.stop(2)


def test_events_are_published_in_order_and_group_removal_deletes(
    redis_server: RedisServer, collector: Collector, outbox
) -> None:
    rpc = StubRPC([info("a", "STOPPED", 0)])
    sink = make_sink(redis_server, rpc, outbox)
    try:
        wait_for(lambda: rpc.calls, 5, "the start resync")
        outbox.put(ProcessStateChange("a", "a", "STOPPED", "STARTING", 0, 1000))
        outbox.put(ProcessStateChange("a", "a", "STARTING", "RUNNING", 77, 1001))
        outbox.put(GroupChange("a", added=False, received=1002))
        messages = wait_for(lambda: len(collector.snapshot()) >= 4 and collector.snapshot(), 5, "the messages")
        assert [(m["event"], m.get("statename")) for m in messages] == [
            ("PROCESS_STATE_STOPPED", "STOPPED"),  # start resync: "a" was not in Redis yet
            ("PROCESS_STATE_STARTING", "STARTING"),
            ("PROCESS_STATE_RUNNING", "RUNNING"),
            ("PROCESS_GROUP_REMOVED", None),
        ]
        assert messages[2]["pid"] == 77
        assert messages[2]["start_time"] == "1970-01-01T00:16:40+00:00"
        rpc.infos = []
        wait_for(lambda: "a" not in stored_snapshot(redis_server.client(), "h"), 5, "the removal")
    finally:
        sink.stop(2)


def test_without_rpc_nothing_stored_is_declared_gone(redis_server: RedisServer, collector: Collector, outbox) -> None:
    client = redis_server.client()
    client.hset("host_procs:h", "old", json.dumps(info("old", "RUNNING", 5)))
    sink = make_sink(redis_server, None, outbox)
    try:
        outbox.put(ProcessStateChange("b", "b", "STOPPED", "STARTING", 0, 1000))
        wait_for(lambda: {"old", "b"} <= set(stored_snapshot(client, "h")), 5, "the merge")
        outbox.request_resync("TICK_60")
        wait_for(lambda: sink.resyncs >= 2, 5, "the tick resync")
        assert set(stored_snapshot(client, "h")) == {"old", "b"}
        assert not [m for m in collector.snapshot() if m["event"] == "PROCESS_GROUP_REMOVED"]
    finally:
        sink.stop(2)


def test_rpc_failure_falls_back_then_retries(redis_server: RedisServer, outbox) -> None:
    rpc = StubRPC(None)
    sink = make_sink(redis_server, rpc, outbox)
    try:
        wait_for(lambda: rpc.calls >= 1, 5, "a first RPC attempt")
        rpc.infos = [info("late", "RUNNING", 4)]
        wait_for(lambda: "late" in stored_snapshot(redis_server.client(), "h"), 5, "the retried resync")
    finally:
        sink.stop(2)


def test_a_requested_resync_is_not_starved_by_a_flood(redis_server: RedisServer, outbox) -> None:
    rpc = StubRPC([info("a", "RUNNING", 1)])
    sink = make_sink(redis_server, rpc, outbox)
    stop = threading.Event()

    def flood() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            outbox.put(ProcessStateChange(f"p{n % 500}", "g", "STOPPED", "STARTING", 0, 1000))
            if n % 200 == 0:
                time.sleep(0.001)

    flooder = threading.Thread(target=flood, daemon=True)
    try:
        wait_for(lambda: sink.resyncs >= 1, 5, "the start resync")
        flooder.start()
        wait_for(lambda: outbox.pending() > 0, 5, "a backlog")
        before = sink.resyncs
        outbox.request_resync("TICK_60")
        wait_for(lambda: sink.resyncs > before, 4, "the TICK resync despite the flood")
    finally:
        stop.set()
        flooder.join(5)
        sink.stop(2)
