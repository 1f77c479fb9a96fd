"""The sink against a real Redis, with a stand-in for supervisord's RPC."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple, Type

import pytest
import redis

from harness import Collector, LogRecords, RedisServer, captured_log, stored_snapshot, wait_for
from raptor.config import ListenerConfig
from raptor.keys import meta_key, snapshot_key
from raptor.publisher import plan as plan_module
from raptor.publisher.acl import permissions_used, refusal
from raptor.publisher.events import GroupChange, ProcessStateChange
from raptor.publisher.outbox import Outbox
from raptor.publisher.sink import RedisSink, make_redis_client

from .test_sink_faults import ACL_PASSWORD, acl_user, holds_for, republished


class StubRPC:
    server_url = "unix:///stub.sock"

    def __init__(self, infos: Optional[List[Dict[str, Any]]]) -> None:
        self.infos = infos
        self.calls = 0
        self.pids = 0

    def get_pid(self) -> int:
        self.pids += 1
        return 1

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


def make_sink(
    redis_server: RedisServer,
    rpc: Optional[StubRPC],
    outbox: Outbox,
    client_class: Type[redis.Redis] = redis.Redis,
    url: Optional[str] = None,
    **options: Any,
) -> RedisSink:
    env = {"SUPERVISOR_ENABLED": "1", "REDIS_URL": url or redis_server.url, "HOSTNAME": "h"}
    config = ListenerConfig.from_env(env)
    client = client_class(connection_pool=make_redis_client(config).connection_pool)
    sink = RedisSink(config, outbox, client, rpc, settle_delay=0.1, **options)  # type: ignore[arg-type]
    sink.start()
    return sink


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


def test_start_resync_diffs_against_what_redis_holds(redis_server: RedisServer, collector: Collector, outbox) -> None:
    client = redis_server.client()
    client.hset(snapshot_key("h"), mapping={
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
        meta = client.hgetall(meta_key("h"))
        assert meta[b"seq"] == b"3"
        assert meta[b"run_id"].decode() == sink.run_id
        assert 0 < client.ttl(snapshot_key("h")) <= 600
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
        messages = wait_for(lambda: len(collector.snapshot()) >= 3 and collector.snapshot(), 5, "the messages")
        # The start resync held "a" back (new, and supervisord may still hold its events):
        # its events tell what happened, not a STOPPED they would go back from.
        assert [(m["event"], m.get("statename")) for m in messages] == [
            ("PROCESS_STATE_STARTING", "STARTING"),
            ("PROCESS_STATE_RUNNING", "RUNNING"),
            ("PROCESS_GROUP_REMOVED", None),
        ]
        assert messages[1]["pid"] == 77
        assert messages[1]["start_time"] == "1970-01-01T00:16:40+00:00"
        rpc.infos = []
        wait_for(lambda: "a" not in stored_snapshot(redis_server.client(), "h"), 5, "the removal")
    finally:
        sink.stop(2)


def test_without_rpc_nothing_stored_is_declared_gone(redis_server: RedisServer, collector: Collector, outbox) -> None:
    client = redis_server.client()
    client.hset(snapshot_key("h"), "old", json.dumps(info("old", "RUNNING", 5)))
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


class StallingRedis(redis.Redis):
    """HGETALL, the resync's first read, times out while ``stalled``: a stalled link."""

    stalled = True

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.stalled and args[0] == "HGETALL":
            raise redis.exceptions.TimeoutError("Timeout reading from socket (stalled by the test)")
        return super().execute_command(*args, **options)


def test_a_resync_failing_after_a_publish_does_not_publish_the_batch_again(
    redis_server: RedisServer, collector: Collector, outbox
) -> None:
    """Issue 10 #3, the sink alone: a resync is due and fails in every pass that publishes."""
    sink = make_sink(redis_server, StubRPC([info("a", "RUNNING", 7)]), outbox, StallingRedis)
    try:
        outbox.put(ProcessStateChange("a", "a", "RUNNING", "STOPPING", 7, 1000))
        outbox.put(ProcessStateChange("a", "a", "STOPPING", "STOPPED", 7, 1001))
        outbox.put(ProcessStateChange("a", "a", "STOPPED", "STARTING", 0, 1002))
        wait_for(lambda: len(collector.snapshot()) >= 3, 5, "the three transitions")
        holds_for(lambda: republished(collector.snapshot()), 3, "each transition published once")
        assert [m["seq"] for m in collector.snapshot()] == [1, 2, 3]
        sink._client.stalled = False  # type: ignore[attr-defined]
        wait_for(lambda: sink.resyncs, 5, "the resync once the link is back")
        assert not republished(collector.snapshot()), republished(collector.snapshot())
    finally:
        sink.stop(2)


class LosesOneResyncReply(redis.Redis):
    """The first resync's EXEC runs, then its reply is lost (the link broke at that moment)."""

    lost = 0

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def execute_then_lose_reply(raise_on_error: bool = True) -> Any:
            resync = any(args[0] == "DEL" for args, _ in pipe.command_stack)
            replies = execute(raise_on_error)
            if resync and not self.lost:
                self.lost += 1
                raise redis.exceptions.TimeoutError("Timeout reading from socket (reply lost by the test)")
            return replies

        pipe.execute = execute_then_lose_reply
        return pipe


def test_seqs_of_a_resync_that_may_have_run_are_not_reused(
    redis_server: RedisServer, collector: Collector, outbox
) -> None:
    """A consumer drops what comes with a seq it has seen: a seq must never carry two messages."""
    rpc = StubRPC([info("a", "RUNNING", 7), info("b", "RUNNING", 8)])
    sink = make_sink(redis_server, rpc, outbox, LosesOneResyncReply)
    try:
        wait_for(lambda: sink.resyncs >= 1, 5, "the resync after the lost reply")
        outbox.put(ProcessStateChange("a", "a", "RUNNING", "STOPPING", 7, 1000))
        wait_for(lambda: any(not m["resync"] for m in collector.snapshot()), 5, "the transition")
        assert not republished(collector.snapshot()), republished(collector.snapshot())
    finally:
        sink.stop(2)


@pytest.fixture
def sink_log() -> Iterator[LogRecords]:
    with captured_log("raptor.sink", logging.INFO) as handler:
        yield handler


def test_a_refused_permission_is_said_once_retried_calmly_and_recovered(
    redis_server: RedisServer, collector: Collector, outbox, sink_log: LogRecords
) -> None:
    admin = redis_server.client()
    acl_user(admin, "nodel", without=["+del"])
    url = f"redis://nodel:{ACL_PASSWORD}@127.0.0.1:{redis_server.port}/0"
    sink = make_sink(redis_server, StubRPC([info("a", "RUNNING", 7)]), outbox, url=url, permission_retry=0.5)

    def refusals() -> List[str]:
        return [line for line in sink_log.lines if "lacks the ACL permission" in line]

    try:
        wait_for(refusals, 5, "the refusal of the start resync's DEL")
        assert "ACL SETUSER nodel +del" in refusals()[0]
        # Events flow while the resync waits for the permission.
        outbox.put(ProcessStateChange("b", "b", "STOPPED", "STARTING", 0, 1000))
        wait_for(collector.snapshot, 5, "the transition")
        holds_for(lambda: len(refusals()) > 1 and refusals(), 2, "one line for the refusal")
        attempts = sum(int(e["count"]) for e in admin.acl_log() if e["object"] == "del")
        assert 2 <= attempts <= 8, f"retried every 0.5 s for about 2.5 s, not {attempts} times"
        admin.execute_command("ACL", "SETUSER", "nodel", "+del")
        wait_for(lambda: sink.resyncs, 5, "the resync once granted")
        # The start resync reports a new process once a second one sees it too.
        wait_for(lambda: set(stored_snapshot(admin, "h")) == {"a"}, 5, "the snapshot once granted")
        assert any("now grants the ACL permission +del" in line for line in sink_log.lines)
        assert len(refusals()) == 1
        assert not republished(collector.snapshot())
    finally:
        sink.stop(2)


@pytest.mark.parametrize(
    ("error", "command", "permission"),
    [
        (redis.exceptions.NoPermissionError("this user has no permissions to run the 'del' command"), (), "+del"),
        (redis.exceptions.NoPermissionError("User u has no permissions to run the 'client|setname' command"), (),
         "+client|setname"),
        (redis.exceptions.ExecAbortError("Transaction discarded because of: NOPERM this user has no permissions to "
                                         "run the 'exec' command"), (), "+exec"),
        (redis.exceptions.ResponseError("EXEC without MULTI"), (), "+multi"),
        (redis.exceptions.NoPermissionError("Command # 5 (HSET host_meta:h seq 1) of pipeline caused error: this user "
                                            "has no permissions to access one of the keys used as arguments"), (),
         "~host_meta:h"),
        (redis.exceptions.NoPermissionError("No permissions to access a key"), ("EXISTS", "k1", "k2"), "~k1 ~k2"),
        (redis.exceptions.NoPermissionError("Command # 1 (PUBLISH proc_events {\"a\": 1}) of pipeline caused "
                                            "error: this user has no permissions to access one of the channels used "
                                            "as arguments"), (), "&proc_events"),
        (redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), (), None),
        (redis.exceptions.ConnectionError("Connection refused"), (), None),
    ],
)  # fmt: skip
def test_refusal_names_the_missing_permission(error: Exception, command: Any, permission: Optional[str]) -> None:
    refused = refusal(error, command)
    assert (refused and refused.permission) == permission


def test_permissions_used_names_them_as_refusal_does() -> None:
    used = permissions_used(
        [["PUBLISH", "proc_events", "{}"], ["HSET", "host_procs:h", "a", "1"], ["EXISTS", "k1", "k2"]]
    )
    assert {"+publish", "&proc_events", "+hset", "~host_procs:h", "+exists", "~k1", "~k2", "+client|setname"} <= used
    assert "~a" not in used


def test_a_batch_that_cannot_be_built_is_dropped_not_retried_forever(
    redis_server: RedisServer, collector: Collector, outbox, monkeypatch
) -> None:
    """A bug met while building one batch (not a Redis error) must not hold up what is
    queued behind it: the batch is dropped with one traceback, and the resync repairs."""
    real = plan_module.state_message

    def poisoned(host: str, info: Dict[str, Any], **fields: Any) -> Any:
        if info["name"] == "poison" and not fields.get("resync"):
            raise KeyError("a bug in building this message")
        return real(host, info, **fields)

    monkeypatch.setattr(plan_module, "state_message", poisoned)
    rpc = StubRPC([info("poison", "RUNNING", 5), info("a", "RUNNING", 6)])
    with captured_log("raptor.sink") as log:
        records = log.records
        sink = make_sink(redis_server, rpc, outbox)
        try:
            start = len(
                wait_for(lambda: len(collector.snapshot()) >= 2 and collector.snapshot(), 5, "the start resync")
            )
            outbox.put(ProcessStateChange("poison", "poison", "RUNNING", "STOPPING", 5, 1000))
            wait_for(lambda: any("dropped a batch of 1 events" in r.getMessage() for r in records), 5, "the drop")
            outbox.put(ProcessStateChange("a", "a", "RUNNING", "STOPPING", 6, 1001))
            later = wait_for(
                lambda: [m for m in collector.snapshot()[start:] if m["name"] == "a"], 5, "the next batch to go out"
            )
            assert later[0]["statename"] == "STOPPING"
            dropped = [r for r in records if "dropped a batch" in r.getMessage()]
            assert len(dropped) == 1
            assert dropped[0].exc_info is not None, "logged with its traceback"
            assert rpc.calls >= 2, "a resync repairs what the dropped batch was about"
        finally:
            sink.stop(2)


def test_a_routine_resync_confirms_a_difference_only_while_the_reader_rests(
    redis_server: RedisServer, collector: Collector, outbox: Outbox
) -> None:
    """input_at_rest says whether the listener's reader waits for a header with nothing
    in the pipe (EventListenerProtocol.at_rest): while it never does, a new process is
    held, whatever the number of resyncs; once it does, two sightings report it."""
    rest: Dict[str, Optional[int]] = {"count": None}
    rpc = StubRPC([info("a", "RUNNING", 5)])
    sink = make_sink(redis_server, rpc, outbox, input_at_rest=lambda: rest["count"])
    try:
        wait_for(lambda: sink.resyncs >= 3, 10, "three resyncs while the reader is busy")
        assert collector.snapshot() == [] and rpc.pids == 0, "no sighting, no barrier calls"
        rest["count"] = 7
        wait_for(lambda: [m["name"] for m in collector.snapshot()] == ["a"], 10, "a, seen twice at rest")
        assert rpc.pids == 4, "two getPID calls after each of the two sightings"
    finally:
        sink.stop(timeout=2.0)


def test_events_carry_the_log_paths_supervisord_reports_from_the_first_one_on(
    redis_server: RedisServer, collector: Collector, outbox: Outbox
) -> None:
    """Issue 25, finding 1: events carry no log paths, and the start-up resync holds
    new processes back; the sink learns the paths from supervisord (off the event path)
    before it publishes events of a process it knows none for: the events queued before
    it started, and those of a group added again with other log files. A process
    supervisord does not list is not asked about again until a group is added."""
    outbox.put(ProcessStateChange("a", "a", "STOPPED", "STARTING", 0, 1000))
    outbox.put(ProcessStateChange("a", "a", "STARTING", "RUNNING", 77, 1001))
    outbox.put(ProcessStateChange("ghost", "ghost", "STOPPED", "STARTING", 0, 1001))
    rpc = StubRPC([info("a", "RUNNING", 77)])

    def paths() -> List[Tuple[str, Optional[str], Optional[str], Optional[str]]]:
        # not the resyncs' corrections: the stub's answers are not what the events did
        return [
            (m["name"], m.get("logfile"), m.get("stdout_logfile"), m.get("stderr_logfile"))
            for m in collector.snapshot()
            if not m["resync"]
        ]

    sink = make_sink(redis_server, rpc, outbox)
    try:
        wait_for(lambda: len(paths()) >= 3, 5, "the queued events")
        outbox.put(ProcessStateChange("ghost", "ghost", "STARTING", "RUNNING", 78, 1002))
        wait_for(lambda: len(paths()) >= 4, 5, "ghost's RUNNING")
        assert paths() == [("a", "/l", "/l", ""), ("a", "/l", "/l", ""), ("ghost", "", "", ""), ("ghost", "", "", "")]
        assert sink.path_lookups == 1, "one getAllProcessInfo() for a and ghost, none again for ghost"
        rpc.infos = [{**info("a", "RUNNING", 79), "logfile": "/l2", "stdout_logfile": "/l2", "stderr_logfile": "/e2"}]
        outbox.put(GroupChange("a", added=False, received=1003))
        outbox.put(GroupChange("a", added=True, received=1003))
        outbox.put(ProcessStateChange("a", "a", "STOPPED", "STARTING", 0, 1004))
        wait_for(lambda: len(paths()) >= 6, 5, "a's STARTING once added again")
        assert paths()[4:] == [("a", None, None, None), ("a", "/l2", "/l2", "/e2")]  # PROCESS_GROUP_REMOVED, STARTING
    finally:
        sink.stop(2)


class DownRedis(redis.Redis):
    """Redis is down: every transaction fails (no connection is ever tried)."""

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)

        def refused(raise_on_error: bool = True) -> Any:
            raise redis.exceptions.ConnectionError("Connection refused (Redis down for the test)")

        pipe.execute = refused
        return pipe


def unstarted_sink(rpc: StubRPC, outbox: Outbox) -> RedisSink:
    """A sink whose batches the test publishes itself, as its loop would (the same list again after a failure)."""
    config = ListenerConfig.from_env({"SUPERVISOR_ENABLED": "1", "REDIS_URL": "redis://127.0.0.1:1/0", "HOSTNAME": "h"})
    return RedisSink(config, outbox, DownRedis.from_url(config.redis_url), rpc)  # type: ignore[arg-type]


def test_a_batch_retried_through_a_redis_outage_asks_supervisord_for_log_paths_once(outbox: Outbox) -> None:
    """Issue 25 (review of 5f4f74b): a batch holding a PROCESS_GROUP_ADDED is retried whole
    while Redis is down; its group add must not make every retry a getAllProcessInfo()
    (O(procs) per retry, for the whole outage). And a failed first call is asked again at
    the next batch, not only at the next resync."""
    rpc = StubRPC([info("g", "RUNNING", 5)])
    sink = unstarted_sink(rpc, outbox)
    batch: List[Any] = [
        GroupChange("g", added=True, received=1000),
        ProcessStateChange("g", "g", "STOPPED", "STARTING", 0, 1001),
    ]
    for _ in range(30):
        with pytest.raises(redis.exceptions.ConnectionError):
            sink._publish(batch)
    assert rpc.calls <= 1, rpc.calls

    rpc = StubRPC(None)  # supervisord does not answer the first time
    sink = unstarted_sink(rpc, outbox)
    for at in (1000, 1001):
        with pytest.raises(redis.exceptions.ConnectionError):
            sink._publish([ProcessStateChange("a", "a", "STOPPED", "STARTING", 0, at)])
        rpc.infos = [info("a", "RUNNING", 5)]
    assert rpc.calls == 2, "asked again at the next batch after a failed call"
    with pytest.raises(redis.exceptions.ConnectionError):
        sink._publish([ProcessStateChange("a", "a", "STARTING", "RUNNING", 5, 1002)])
    assert rpc.calls == 2, "then not again: the paths are known"
