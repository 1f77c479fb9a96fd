"""Following the history stream (raptor.consumer.stream, Follower): start, resume, gaps.

Entries are written as the publisher writes them (:class:`FakePublisher`: PUBLISH, both
streams, snapshot and meta in one MULTI/EXEC), against a real redis-server. Outages are
a TcpProxy cut (entries keep arriving while the consumer cannot read), a Redis restart
that keeps its data (appendonly) and one that comes back empty. Every wait has a deadline.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import redis
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

from harness import RedisServer, TcpProxy, wait_for
from raptor import keys
from raptor.consumer.follow import Follower, make_client
from raptor.consumer.stream import EntryDecoder, Gap, StreamReader, id_before, parse_id
from raptor.messages import encode, history_entry, message_from_entry, removal_message, state_message
from raptor.publisher.events import STATE_CODES
from raptor.publisher.process_table import ProcessInfo, blank_info

FAST = EqualJitterBackoff(cap=0.2, base=0.05)


class FakePublisher:
    """One host's listener as Redis sees it: each transition is a channel message, an
    entry in both streams, the snapshot's record and the meta's seq, in one MULTI/EXEC."""

    def __init__(self, client: redis.Redis, host: str, run_id: str = "run-1") -> None:
        self.client = client
        self.host = host
        self.run_id = run_id
        self.seq = 0
        self.infos: Dict[str, ProcessInfo] = {}

    def transition(
        self,
        name: str,
        to_state: str,
        *,
        pid: int = 0,
        now: Optional[float] = None,
        expected: Optional[bool] = None,
        exitstatus: int = 0,
        group: Optional[str] = None,
        entry_id: str = "*",
        resync: bool = False,
        from_state: Optional[str] = "",
    ) -> Dict[str, Any]:
        info = self.infos.get(name) or blank_info(name, group or name)
        before = info["statename"] if name in self.infos else "STOPPED"
        at = int(now if now is not None else time.time())
        info = {**info, "statename": to_state, "state": STATE_CODES[to_state], "pid": pid, "now": at,
                "exitstatus": exitstatus}  # fmt: skip
        if to_state == "STARTING":
            info["start"] = at
        self.infos[name] = info  # type: ignore[assignment]
        self.seq += 1
        message = state_message(
            self.host,
            info,  # type: ignore[arg-type]
            event=f"PROCESS_STATE_{to_state}",
            from_state=before if from_state == "" else from_state,
            seq=self.seq,
            run_id=self.run_id,
            resync=resync,
        )
        self._write(message, history_entry(message, expected), entry_id, snapshot=(name, json.dumps(info)))
        return dict(message)

    def remove(self, name: str, *, now: Optional[float] = None) -> None:
        self.seq += 1
        info = self.infos.pop(name)
        at = now if now is not None else time.time()
        message = removal_message(self.host, name, info["group"], now=at, seq=self.seq, run_id=self.run_id)
        self._write(message, history_entry(message), "*", removed=name)

    def _write(
        self,
        message: Any,
        entry: Dict[str, str],
        entry_id: str,
        snapshot: Optional[Tuple[str, str]] = None,
        removed: Optional[str] = None,
    ) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.publish(keys.DEFAULT_CHANNEL, encode(message))
        pipe.xadd(keys.FLEET_HISTORY, entry, id=entry_id)  # type: ignore[arg-type]
        pipe.xadd(keys.history_key(self.host), entry, id=entry_id)  # type: ignore[arg-type]
        if snapshot is not None:
            pipe.hset(keys.snapshot_key(self.host), snapshot[0], snapshot[1])
        if removed is not None:
            pipe.hdel(keys.snapshot_key(self.host), removed)
        pipe.hset(
            keys.meta_key(self.host),
            mapping={keys.META_RUN_ID: self.run_id, keys.META_SEQ: self.seq, keys.META_REFRESHED: time.time()},
        )
        pipe.execute()


# -- the decoder ------------------------------------------------------------------------


def entries_of_every_kind() -> List[Dict[str, str]]:
    name = "node_example-v2-local-f96054b7-web-5003"
    info: Any = {**blank_info(name, name), "statename": "RUNNING", "state": 20, "pid": 42, "now": 1_700_000_005,
                 "start": 1_700_000_000, "description": "pid 42, uptime 0:00:05"}  # fmt: skip
    running = state_message("web1", info, event="PROCESS_STATE_RUNNING", from_state="STARTING", seq=3, run_id="r")
    ended = {**info, "statename": "EXITED", "state": 100, "exitstatus": 3, "stop": 1_700_000_009, "now": 1_700_000_009}
    exited = state_message("web1", ended, event="PROCESS_STATE_EXITED", from_state="RUNNING", seq=4, run_id="r")  # type: ignore[arg-type]
    grouped: Any = {**blank_info("worker_01", "workers"), "now": 1_700_000_010}
    stopped = state_message(
        "web1", grouped, event="PROCESS_STATE_STOPPED", from_state=None, seq=5, run_id="r", resync=True
    )
    removal = removal_message("web1", "worker_01", "workers", now=1_700_000_011, seq=6, run_id="r")
    return [
        history_entry(running),
        history_entry(exited, expected=False),
        history_entry(exited, expected=True),
        history_entry(stopped),
        history_entry(removal),
        {**history_entry(running), "now": "garbage", "pid": "x", "state": ""},
        {**history_entry(running), "name": "caf\u00e9\x1b[31m", "now": "1700000099"},
    ]


def flat(fields: Dict[str, str]) -> List[str]:
    """An entry as XREAD sends it: field, value, field, value..."""
    return [item for pair in fields.items() for item in pair]


def test_the_decoder_makes_exactly_the_messages_message_from_entry_makes() -> None:
    decode = EntryDecoder()
    for _ in range(2):  # the second time from its cache
        for fields in entries_of_every_kind():
            expected = message_from_entry(fields)
            assert decode(fields) == expected
            assert decode.flat(flat(fields)) == expected
            reordered = dict(reversed(fields.items()))  # not the publisher's order: message_from_entry's way
            assert decode.flat(flat(reordered)) == expected
    message = decode(entries_of_every_kind()[0])
    message["pid"] = -1  # a consumer's change does not reach the cache
    assert decode(entries_of_every_kind()[0])["pid"] == 42


def test_the_decoder_raises_as_message_from_entry_does() -> None:
    decode = EntryDecoder()
    good = entries_of_every_kind()[0]
    decode(good)  # from now on this process' entries come from the cache
    without_run_id = {k: v for k, v in good.items() if k != "run_id"}
    without_statename = {k: v for k, v in good.items() if k != "statename"}
    for fields in ({"host": "h"}, {**good, "seq": "nope"}, without_run_id, without_statename, {**good, "seq": ""}):
        with pytest.raises((KeyError, ValueError)) as expected:
            message_from_entry(fields)
        with pytest.raises(expected.type):
            decode(fields)
        with pytest.raises(expected.type):
            decode.flat(flat(fields))


def test_ids() -> None:
    assert parse_id("1700000000000-3") == (1_700_000_000_000, 3)
    assert id_before("5-3") == "5-2"
    assert id_before("5-0") == f"4-{2**64 - 1}"
    assert id_before("0-0") == "0-0"
    for bad in ("", "12", "a-b", "1-2-3", "-1-0"):
        with pytest.raises(ValueError):
            parse_id(bad)


# -- the reader against Redis --------------------------------------------------------------


class Running:
    """A reader (or follower) run in a thread, stopped at the end of the with block."""

    def __init__(self, target: Any, **kwargs: Any) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=target, kwargs={**kwargs, "stop": self.stop}, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the loop did not stop within 10 s"


class Recorder:
    """What a reader hands on."""

    def __init__(self) -> None:
        self.ids: List[str] = []
        self.messages: List[Dict[str, Any]] = []
        self.gaps: List[Gap] = []
        self.connects = 0
        self.states: List[bool] = []

    def on_message(self, message: Dict[str, Any], entry_id: str) -> None:
        self.ids.append(entry_id)
        self.messages.append(message)

    def on_connect(self) -> None:
        self.connects += 1

    def kwargs(self) -> Dict[str, Any]:
        return {"on_connect": self.on_connect, "on_gap": self.gaps.append, "on_state": self.states.append,
                "poll": 0.05}  # fmt: skip


def no_retries(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2, retry=Retry(EqualJitterBackoff(), 0))


def fleet_ids(client: redis.Redis) -> List[str]:
    return [i.decode() for i, _ in client.xrange(keys.FLEET_HISTORY)]


@pytest.mark.integration
def test_the_reader_starts_at_the_end_and_hands_on_every_entry_in_order(redis_server: RedisServer) -> None:
    client = redis_server.client()
    web1 = FakePublisher(client, "web1")
    web1.transition("a", "STARTING")  # before the reader: not read
    reader = StreamReader(make_client(redis_server.url), count=7)  # small batches: several reads per catch-up
    seen = Recorder()
    with Running(reader.run, on_message=seen.on_message, **seen.kwargs()):
        wait_for(lambda: seen.connects, 10, "the reader to connect")
        for i in range(40):
            web1.transition("a", "RUNNING" if i % 2 else "STARTING", pid=i)
        wait_for(lambda: len(seen.ids) == 40, 10, "40 entries")
    assert seen.ids == fleet_ids(client)[1:]
    assert [m["seq"] for m in seen.messages] == list(range(2, 42))
    assert (reader.received, reader.unparsed, reader.gaps, seen.gaps) == (40, 0, 0, [])
    assert seen.states == [True]


@pytest.mark.integration
def test_an_absent_stream_is_waited_for_then_read_from_its_start(redis_server: RedisServer) -> None:
    reader = StreamReader(make_client(redis_server.url))
    seen = Recorder()
    with Running(reader.run, on_message=seen.on_message, **seen.kwargs()):
        wait_for(lambda: reader.connected, 10, "the reader to connect")
        assert reader.last_id == "0-0"
        client = redis_server.client()
        client.publish(keys.DEFAULT_CHANNEL, "an old publisher only publishes")
        web1 = FakePublisher(client, "web1")
        for state in ("STARTING", "RUNNING"):
            web1.transition("a", state)
        wait_for(lambda: len(seen.ids) == 2, 10, "the first entries of the new stream")
    assert seen.ids == fleet_ids(client)
    assert seen.gaps == []


@pytest.mark.integration
def test_an_entry_that_does_not_parse_is_skipped_and_counted(redis_server: RedisServer) -> None:
    client = redis_server.client()
    web1 = FakePublisher(client, "web1")
    reader = StreamReader(make_client(redis_server.url))
    seen = Recorder()
    with Running(reader.run, on_message=seen.on_message, **seen.kwargs()):
        wait_for(lambda: seen.connects, 10, "the reader to connect")
        client.xadd(keys.FLEET_HISTORY, {"what": "not raptor's"})
        client.xadd(keys.FLEET_HISTORY, {**history_entry(web1.transition("a", "STARTING")), "seq": "NaN"})
        web1.transition("a", "RUNNING")
        wait_for(lambda: seen.messages, 10, "the entry after the bad ones")
    assert [m["statename"] for m in seen.messages] == ["STARTING", "RUNNING"]  # FakePublisher's own entries
    assert reader.unparsed == 2
    assert reader.last_id == fleet_ids(client)[-1]


@pytest.mark.integration
def test_a_reader_from_an_id_reads_what_follows_it(redis_server: RedisServer) -> None:
    client = redis_server.client()
    web1 = FakePublisher(client, "web1")
    for i in range(5):
        web1.transition("a", "STARTING", pid=i)
    ids = fleet_ids(client)
    reader = StreamReader(make_client(redis_server.url), start=id_before(ids[2]))
    seen = Recorder()
    with Running(reader.run, on_message=seen.on_message, **seen.kwargs()):
        wait_for(lambda: len(seen.ids) == 3, 10, "the entries from the third on")
    assert seen.ids == ids[2:]
    assert seen.gaps == []


@pytest.mark.integration
def test_the_follower_resumes_after_a_cut_without_loss_then_reports_a_trim_and_reloads(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    web1 = FakePublisher(client, "web1")
    web1.transition("a", "STARTING", pid=0)
    with TcpProxy(redis_server.port) as proxy:
        follower = Follower(no_retries(proxy.port), backoff=FAST)
        changes: List[Dict[str, Any]] = []
        gaps: List[Gap] = []
        with Running(follower.run, on_change=changes.append, on_gap=gaps.append, poll=0.05):
            wait_for(lambda: follower.connected, 10, "the follower to connect")
            assert follower.fleet.hosts["web1"].procs["a"]["statename"] == "STARTING"  # from the snapshot
            web1.transition("a", "RUNNING", pid=10)
            wait_for(lambda: len(changes) == 1, 10, "the first entry")

            # 1. The link is cut; entries keep coming; it heals: each read once, in order.
            proxy.cut()
            wait_for(lambda: not follower.connected, 10, "the follower to notice the cut")
            for pid in range(11, 31):
                web1.transition("a", "RUNNING" if pid % 2 else "STARTING", pid=pid)
            proxy.start()
            wait_for(lambda: follower.reader.received == 21, 10, "the entries added during the cut")
            # Each read once and judged in order (no gap, no reload); the fleet view applies
            # the last state of each process per batch read: seq 22, not the 20 before it.
            assert follower.messages == 21 and follower.fleet.hosts["web1"].seq == 22
            assert changes[0]["seq"] == 2 and changes[-1]["seq"] == 22
            assert [m["seq"] for m in changes] == sorted({m["seq"] for m in changes})
            assert follower.fleet.hosts["web1"].procs["a"]["pid"] == 30
            assert (follower.gaps, follower.resyncs, gaps) == (0, 0, [])
            assert follower.reader.connections >= 2, "cut off and back (a loaded machine may take two tries)"

            # 2. Cut again; entries it has not read are trimmed away: a gap of exactly that many.
            proxy.cut()
            wait_for(lambda: not follower.connected, 10, "the follower to notice the second cut")
            read_up_to = follower.reader.last_id
            for pid in range(31, 36):
                web1.transition("a", "RUNNING" if pid % 2 else "STARTING", pid=pid)
            client.xtrim(keys.FLEET_HISTORY, maxlen=0, approximate=False)
            proxy.start()
            wait_for(lambda: gaps, 10, "the gap to be reported")
            wait_for(lambda: follower.fleet.hosts["web1"].procs["a"].get("pid") == 35, 10, "the reload")
            assert gaps == [Gap(after=str(read_up_to), lost=5, resumed_at=None)]
            assert (follower.gaps, follower.resyncs) == (1, 1)
            assert follower.fleet.hosts["web1"].seq == 27  # the meta's seq: what the snapshot is as of
            changed = len(changes)
            assert changes[-1]["seq"] == 22

            # 3. And on from there.
            web1.transition("a", "STOPPED")
            wait_for(lambda: len(changes) == changed + 1, 10, "the entry after the gap")
            assert changes[-1]["seq"] == 28
            assert follower.fleet.hosts["web1"].procs["a"]["statename"] == "STOPPED"


@pytest.mark.integration
def test_a_trim_while_catching_up_counts_exactly_what_was_lost(redis_server: RedisServer) -> None:
    """Entries 1-10 read; 11-30 added and 11-25 trimmed before the reader comes back."""
    client = redis_server.client()
    web1 = FakePublisher(client, "web1")
    with TcpProxy(redis_server.port) as proxy:
        reader = StreamReader(no_retries(proxy.port), backoff=FAST)
        seen = Recorder()
        with Running(reader.run, on_message=seen.on_message, **seen.kwargs()):
            wait_for(lambda: reader.connected, 10, "the reader to connect")
            for _ in range(10):
                web1.transition("a", "STARTING")
            wait_for(lambda: len(seen.ids) == 10, 10, "the first ten")
            proxy.cut()
            wait_for(lambda: not reader.connected, 10, "the cut")
            for _ in range(20):
                web1.transition("a", "STARTING")
            client.xtrim(keys.FLEET_HISTORY, maxlen=5, approximate=False)
            kept = fleet_ids(client)
            proxy.start()
            wait_for(lambda: len(seen.ids) == 15, 10, "the five kept")
    assert seen.ids[10:] == kept
    assert [m["seq"] for m in seen.messages] == [*range(1, 11), *range(26, 31)]
    (gap,) = seen.gaps
    assert (gap.after, gap.lost, gap.resumed_at, gap.reset) == (seen.ids[9], 15, kept[0], False)
    assert (reader.gaps, reader.lost) == (1, 15)
    assert "15 entries after" in gap.describe()


@pytest.mark.integration
def test_a_redis_restart_that_keeps_its_data_is_resumed_without_a_gap(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", extra_args=["--appendonly", "yes", "--appendfsync", "always"]) as server:
        client = server.client()
        web1 = FakePublisher(client, "web1")
        web1.transition("a", "STARTING")
        follower = Follower(no_retries(server.port), backoff=FAST)
        changes: List[Dict[str, Any]] = []
        with Running(follower.run, on_change=changes.append, poll=0.05):
            wait_for(lambda: follower.connected, 10, "the follower to connect")
            web1.transition("a", "RUNNING", pid=7)
            wait_for(lambda: changes, 10, "the first entry")
            server.stop()
            wait_for(lambda: not follower.connected, 10, "the follower to notice")
            server.start()
            client = server.client()
            web1.client = client
            web1.transition("a", "STOPPING", pid=7)
            web1.transition("a", "STOPPED")
            wait_for(lambda: follower.reader.received == 3, 15, "the entries after the restart")
        # Read in one batch or two: the last state of each batch is applied.
        assert [m["seq"] for m in changes] in ([2, 3, 4], [2, 4])
        assert follower.fleet.hosts["web1"].procs["a"]["statename"] == "STOPPED"
        assert (follower.gaps, follower.resyncs, follower.fleet.hosts["web1"].seq) == (0, 0, 4)


@pytest.mark.integration
def test_a_redis_that_comes_back_empty_is_a_reset_reported_and_reloaded(redis_server: RedisServer) -> None:
    client = redis_server.client()
    web1 = FakePublisher(client, "web1")
    web1.transition("a", "STARTING")
    follower = Follower(no_retries(redis_server.port), backoff=FAST)
    gaps: List[Gap] = []
    with Running(follower.run, on_gap=gaps.append, poll=0.05):
        wait_for(lambda: follower.connected, 10, "the follower to connect")
        web1.transition("a", "RUNNING", pid=7)
        wait_for(lambda: follower.reader.received == 1, 10, "the first entry")
        redis_server.stop(kill=True)
        wait_for(lambda: not follower.connected, 10, "the follower to notice")
        redis_server.start()
        wait_for(lambda: gaps, 15, "the reset to be reported")
        assert gaps[0].reset
        assert "deleted or recreated" in gaps[0].describe()
        assert follower.fleet.hosts == {}  # reloaded: Redis has nothing yet
        # The listener republishes: a new stream, read from its start.
        web1 = FakePublisher(redis_server.client(), "web1", run_id="run-1")
        web1.seq = 2
        web1.transition("a", "RUNNING", pid=7, resync=True)
        wait_for(lambda: follower.reader.received == 2, 10, "the new stream's entry")
        wait_for(lambda: "web1" in follower.fleet.hosts, 10, "the host back")
    assert len(gaps) == 1
    assert follower.fleet.hosts["web1"].procs["a"]["pid"] == 7


@pytest.mark.integration
def test_a_snapshot_newer_than_the_start_position_drops_the_older_entries(redis_server: RedisServer) -> None:
    """The start-up order: position, then snapshots, then entries after the position.
    Entries written between the first two are already in the snapshot: dropped by seq."""
    client = redis_server.client()
    web1 = FakePublisher(client, "web1")
    web1.transition("a", "STARTING")
    follower = Follower(make_client(redis_server.url), backoff=FAST)
    original_load = follower.fleet.load
    raced = threading.Event()

    def load_after_a_write(*args: Any, **kwargs: Any) -> None:
        if not raced.is_set():
            raced.set()
            web1.transition("a", "RUNNING", pid=9)  # after the position, before the load
        original_load(*args, **kwargs)

    follower.fleet.load = load_after_a_write  # type: ignore[method-assign]
    changes: List[Dict[str, Any]] = []
    with Running(follower.run, on_change=changes.append, poll=0.05):
        wait_for(lambda: follower.reader.received == 1, 10, "the raced entry")
        web1.transition("a", "STOPPING", pid=9)
        wait_for(lambda: changes, 10, "the next entry")
    assert [m["statename"] for m in changes] == ["STOPPING"]  # RUNNING was in the snapshot already
    assert follower.fleet.hosts["web1"].seq == 3


@pytest.fixture
def many_entries(redis_server: RedisServer) -> Iterator[Tuple[redis.Redis, int]]:
    client = redis_server.client()
    web1 = FakePublisher(client, "web1")
    web1.transition("a", "STARTING")
    pipe = client.pipeline(transaction=False)
    total = 5000
    base = {**history_entry(web1.transition("a", "RUNNING", pid=1))}
    for seq in range(3, total + 3):
        pipe.xadd(keys.FLEET_HISTORY, {**base, "seq": str(seq), "pid": str(seq)})
    pipe.execute()
    yield client, total + 2


@pytest.mark.integration
def test_catch_up_reads_in_batches_and_misses_nothing(many_entries: Tuple[redis.Redis, int]) -> None:
    client, total = many_entries
    reader = StreamReader(client, start="0-0")
    seen = Recorder()
    with Running(reader.run, on_message=seen.on_message, **seen.kwargs()):
        wait_for(lambda: len(seen.ids) == total, 20, "every entry")
    assert [m["seq"] for m in seen.messages] == list(range(1, total + 1))
    assert seen.gaps == []


def flat_entries(client: redis.Redis) -> List[Tuple[str, List[str]]]:
    """The fleet stream as XREAD sends it to the Follower: (id, [field, value, ...])."""
    return [
        (entry_id.decode(), [part.decode() for pair in fields.items() for part in pair])
        for entry_id, fields in client.xrange(keys.FLEET_HISTORY)
    ]


@pytest.mark.integration
def test_a_batch_applies_the_last_state_of_each_process_and_judges_every_seq(redis_server: RedisServer) -> None:
    """Follower.apply_entries against the message-by-message path (Follower.apply) on
    the same entries: the same fleet, every entry counted, one change per process."""
    client = redis_server.client()
    one_by_one, batch = Follower(client), Follower(client)  # both start with an empty fleet
    web1, web2 = FakePublisher(client, "web1"), FakePublisher(client, "web2", run_id="run-9")
    for pid in range(1, 6):
        web1.transition("a", "RUNNING" if pid % 2 else "STARTING", pid=pid)
        web1.transition("b", "STARTING", pid=0)
    web2.transition("c", "FATAL")
    client.xadd(keys.FLEET_HISTORY, {"not": "raptor's"})
    web1.transition("b", "RUNNING", pid=77)
    entries = flat_entries(client)
    decoder = EntryDecoder()
    for _, flat in entries:
        if flat[0] == "host":
            one_by_one.apply(decoder.flat(flat))
    changes: List[Dict[str, Any]] = []
    assert batch.apply_entries(entries + entries[:3], changes.append) == 15  # a stranger skipped; 3 duplicates
    assert batch.reader.unparsed == 1
    assert sorted((m["host"], m["name"], m["seq"]) for m in changes) == [
        ("web1", "a", 9), ("web1", "b", 11), ("web2", "c", 1)
    ]  # fmt: skip
    for host in ("web1", "web2"):
        assert batch.fleet.hosts[host].procs == one_by_one.fleet.hosts[host].procs
        assert batch.fleet.hosts[host].seq == one_by_one.fleet.hosts[host].seq
    assert batch.resyncs == one_by_one.resyncs == 0

    # A seq gap in the middle of a batch: the host is reloaded there, and what came
    # before it in the batch is not applied over the snapshot.
    web1.transition("a", "STOPPING", pid=5)
    web1.seq += 3  # three seqs never written: lost
    web1.transition("a", "STOPPED")
    web1.transition("b", "STOPPING", pid=77)
    changes.clear()
    assert batch.apply_entries(flat_entries(client)[-3:], changes.append) == 3
    assert batch.resyncs == 1
    # b's STOPPING is in the snapshot read then (the meta's seq counts it): a duplicate.
    assert [(m["name"], m["statename"]) for m in changes] == [("a", "STOPPED")]
    assert batch.fleet.hosts["web1"].procs["a"]["statename"] == "STOPPED"
    assert batch.fleet.hosts["web1"].procs["b"]["statename"] == "STOPPING"
    assert batch.fleet.hosts["web1"].seq == web1.seq

    # The last entry of a process in a batch cannot be decoded: skipped (not taken), and
    # its host reloaded, since the states before it in the batch were not applied.
    web1.transition("a", "STARTING")
    web1.transition("a", "RUNNING", pid=6)
    last_two = flat_entries(client)[-2:]
    broken = list(last_two[-1][1])
    broken[broken.index("now") + 1] = "9" * 30  # past year 9999
    unparsed, resyncs = batch.reader.unparsed, batch.resyncs
    assert batch.apply_entries([last_two[0], (last_two[-1][0], broken)], changes.append) == 1
    assert (batch.reader.unparsed, batch.resyncs) == (unparsed + 1, resyncs + 1)
    assert batch.fleet.hosts["web1"].procs["a"]["statename"] == "RUNNING"  # the snapshot's
    assert batch.fleet.hosts["web1"].seq == web1.seq
