"""``raptor`` driven in-process, ``main(argv, out, err, stop)``, against a real redis-server.

Snapshots and meta records are written with raptor.keys' helpers, history entries as
the publisher writes them (tests.test_stream_follow.FakePublisher, or history_entry);
``tail`` and ``watch`` run in a thread and end through ``--count`` or the ``stop``
event, and every wait has a deadline.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
import redis

from harness import RedisServer, TcpProxy, free_port, wait_for
from raptor import keys
from raptor.consumer.cli import main
from raptor.consumer.follow import Subscriber, make_client
from raptor.messages import history_entry, message_from_entry

pytestmark = pytest.mark.integration

CHANNEL = keys.DEFAULT_CHANNEL
NAMES = ["node_example-v2-local-f96054b7-web-5003", "worker"]


def write_host(
    client: redis.Redis,
    host: str,
    pids: Dict[str, int],
    *,
    refreshed: float,
    run_id: str = "run-1",
    seq: int = 4,
    supervisord_id: Optional[str] = None,
) -> None:
    """What a listener keeps in Redis: the snapshot (raw getAllProcessInfo() entries) and its meta."""
    entries = {}
    for name, pid in pids.items():
        running = bool(pid)
        entry = {"name": name, "group": name, "statename": "RUNNING" if running else "STOPPED",
                 "state": 20 if running else 0, "pid": pid, "description": f"pid {pid}" if running else "Not started",
                 "start": 1_700_000_000}  # fmt: skip
        entries[name] = json.dumps(entry)
    meta: Dict[str, Any] = {keys.META_RUN_ID: run_id, keys.META_SEQ: seq, keys.META_REFRESHED: refreshed}
    # The listener's health as it writes it (strings), and one field that does not parse.
    meta.update({keys.META_ACK_P99_MS: "0.3100", keys.META_DISCARDED: "2", keys.META_COALESCED: "0"})
    meta.update({keys.META_VERSION: "3.0.0", keys.META_EVENTS: "not a number"})
    if supervisord_id:
        meta[keys.META_SUPERVISORD_ID] = supervisord_id
    client.hset(keys.snapshot_key(host), mapping=entries)
    client.hset(keys.meta_key(host), mapping=meta)


def run(*argv: str) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


class Background:
    """``main(argv)`` in a thread, with its own streams and stop event."""

    def __init__(self, *argv: str) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        self.stop = threading.Event()
        self.code: Optional[int] = None
        self._thread = threading.Thread(target=self._run, args=(list(argv),), daemon=True)
        self._thread.start()

    def _run(self, argv: List[str]) -> None:
        self.code = main(argv, self.out, self.err, self.stop)

    def lines(self) -> List[str]:
        return self.out.getvalue().splitlines()

    def errors(self) -> List[str]:
        return self.err.getvalue().splitlines()

    def finish(self, timeout: float = 10, stop: bool = False) -> int:
        if stop:
            self.stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"raptor did not return within {timeout} s"
        assert self.code is not None
        return self.code


def subscribed(client: redis.Redis, count: int = 1) -> bool:
    return bool(client.pubsub_numsub(CHANNEL)[0][1] >= count)


def reading(client: redis.Redis) -> bool:
    """A consumer waits in XREAD BLOCK on the history stream: it took its position."""
    return any(c.get("cmd") == "xread" and "b" in c.get("flags", "") for c in client.client_list())


def state(seq: int, *, host: str = "web1", run_id: str = "run-a", name: str = "worker") -> Dict[str, Any]:
    return {"event": "PROCESS_STATE_RUNNING", "host": host, "name": name, "statename": "RUNNING",
            "from_state": "STARTING", "pid": 100 + seq, "now": "2026-11-24T13:18:22+00:00",
            "run_id": run_id, "seq": seq, "resync": False}  # fmt: skip


def add(client: redis.Redis, message: Dict[str, Any], entry_id: str = "*") -> str:
    """*message* appended to the history as the publisher appends it; its entry id."""
    entry = history_entry(message)  # type: ignore[arg-type]
    added = client.xadd(keys.FLEET_HISTORY, entry, id=entry_id)  # type: ignore[arg-type]
    client.xadd(keys.history_key(message["host"]), entry, id=added)  # type: ignore[arg-type]
    return str(added.decode() if isinstance(added, bytes) else added)


def printed(entry_id: str, message: Dict[str, Any]) -> Dict[str, Any]:
    """What ``tail`` prints of an entry: the message the stream gives back, and the id."""
    return {**message_from_entry(history_entry(message)), "entry_id": entry_id}  # type: ignore[arg-type]


# -- status ------------------------------------------------------------------------------


def test_status_table(redis_server: RedisServer) -> None:
    client = redis_server.client()
    now = time.time()
    write_host(client, "web1", {NAMES[0]: 42, NAMES[1]: 0}, refreshed=now - 5)
    write_host(client, "gone", {"x": 7}, refreshed=now - 500)
    code, out, err = run("status", "--redis-url", redis_server.url)
    assert (code, err) == (0, "")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["HOST", "PROCS", "RUNNING", "STOPPED", "RESTARTS", "REFRESHED", "STATUS"]
    assert rows[1][:5] == ["gone", "1", "1", "0", "0"]
    assert rows[1][-1] == "STALE"
    assert rows[2][:5] == ["web1", "2", "1", "1", "0"]
    assert rows[2][-2:] == ["ago", "ok"]
    code, out, _ = run("status", "--redis-url", redis_server.url, "--host", "web*")
    summary, detail = out.split("\n\n")
    assert [row.split()[0] for row in summary.splitlines()] == ["HOST", "web1"]
    assert [row.split()[:4] for row in detail.splitlines()] == [
        ["HOST", "PROCESS", "STATE", "PID"],
        ["web1", NAMES[0], "RUNNING", "42"],
        ["web1", NAMES[1], "STOPPED", "-"],
    ]


def test_status_json_keeps_its_shape(redis_server: RedisServer) -> None:
    client = redis_server.client()
    refreshed = time.time() - 3
    write_host(client, "web1", {NAMES[0]: 42}, refreshed=refreshed, run_id="run-9", seq=12, supervisord_id="b00t:1")
    code, out, err = run("status", "--json", "--redis-url", redis_server.url)
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert set(report) == {"hosts", "duplicates", "duplicate_basis"}
    (host,) = report["hosts"]
    assert 2.5 < host.pop("age_s") < 30
    assert host == {
        "host": "web1",
        "procs": [
            {
                "host": "web1",
                "id": f"web1-{NAMES[0]}",
                "name": NAMES[0],
                "app_name": "node_example",
                "version": "v2",
                "config_name": "local",
                "hash": "f96054b7",
                "proc_name": "web",
                "port": 5003,
                "group": NAMES[0],
                "statename": "RUNNING",
                "state": 20,
                "pid": 42,
                "description": "pid 42",
                "start": 1_700_000_000,
            }
        ],
        "counts": {"RUNNING": 1},
        "stale": False,
        "refreshed": pytest.approx(refreshed),
        "run_id": "run-9",
        "seq": 12,
        "supervisord_id": "b00t:1",
        "listener": {"ack_p99_ms": 0.31, "discarded_by_supervisord": 2, "coalesced": 0, "version": "3.0.0"},
        "restarts_1h": 0,
        "process_restarts_1h": {},
    }
    assert report["duplicates"] == []
    assert report["duplicate_basis"] == []


def test_status_exits_1_on_duplicates(redis_server: RedisServer) -> None:
    client = redis_server.client()
    now = time.time()
    write_host(client, "web1", {"a": 10}, refreshed=now, supervisord_id="b00t:7")
    write_host(client, "web1.example.com", {"b": 11}, refreshed=now, supervisord_id="b00t:7")
    write_host(client, "web2", {"a": 10}, refreshed=now, supervisord_id="b00t:8")
    code, out, _ = run("status", "--redis-url", redis_server.url)
    assert code == 1
    assert out.splitlines()[-1] == (
        "DUPLICATE: web1 and web1.example.com are one supervisord publishing under two names "
        "(same supervisord_id b00t:7)"
    )
    code, out, _ = run("status", "--json", "--redis-url", redis_server.url)
    assert code == 1
    assert json.loads(out)["duplicate_basis"] == [
        {"hosts": ["web1", "web1.example.com"], "basis": "supervisord_id", "detail": "b00t:7"}
    ]


def test_an_unreachable_redis_is_exit_2_and_one_line() -> None:
    port = free_port()
    started = time.monotonic()
    code, out, err = run("status", "--redis-url", f"redis://:secret@127.0.0.1:{port}/0")
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"raptor: cannot reach Redis at redis://:***@127.0.0.1:{port}/0: ")
    assert "secret" not in err
    assert time.monotonic() - started < 10


def test_a_bad_url_is_exit_2_and_names_the_option() -> None:
    code, out, err = run("status", "--redis-url", "http://nope")
    assert (code, out) == (2, "")
    assert err.startswith("raptor: ")
    assert "--redis-url" in err
    assert len(err.splitlines()) == 1


# -- tail --------------------------------------------------------------------------------


def test_tail_prints_the_entries_added_while_it_runs(redis_server: RedisServer) -> None:
    client = redis_server.client()
    add(client, state(1))  # before tail: not printed (tail starts at the end)
    tail = Background("tail", "--redis-url", redis_server.url, "--event", "PROCESS_STATE_*", "--count", "3")
    wait_for(lambda: reading(client), 10, "tail to read the stream")
    foreign = client.xadd(keys.FLEET_HISTORY, {"what": "not raptor's"}).decode()  # skipped, said once
    ids = [add(client, state(2))]
    client.xadd(keys.FLEET_HISTORY, {"what": "nor this"})
    add(client, {"event": "PROCESS_GROUP_REMOVED", "host": "web1", "name": "x", "time": None, "run_id": "run-a",
                 "seq": 3, "resync": False, "payload_headers": {"groupname": "x"}})  # fmt: skip
    ids += [add(client, state(seq)) for seq in (4, 5)]
    assert tail.finish() == 0
    assert [json.loads(line) for line in tail.lines()] == [
        printed(ids[0], state(2)),  # the removal filtered out
        printed(ids[1], state(4)),
        printed(ids[2], state(5)),
    ]
    assert tail.errors() == [
        f"raptor tail: skipping history entries that are not raptor's (the first: {foreign}, KeyError: 'host')",
        "raptor tail: 2 history entries skipped in all",
    ]


def test_tail_line_format_and_host_filter(redis_server: RedisServer) -> None:
    client = redis_server.client()
    tail = Background("tail", "--redis-url", redis_server.url, "--host", "db*", "--format", "line")
    wait_for(lambda: reading(client), 10, "tail to read the stream")
    add(client, state(1, host="web1"))
    add(client, state(1, host="db1"))
    wait_for(tail.lines, 10, "tail to print")
    assert tail.finish(stop=True) == 0  # the stop event ends a tail without --count
    assert tail.lines() == ["13:18:22  db1  worker  STARTING -> RUNNING (pid 101)"]


def test_tail_since_an_entry_or_a_while_ago(redis_server: RedisServer) -> None:
    client = redis_server.client()
    now_ms = int(client.time()[0]) * 1000
    old = [add(client, state(seq), entry_id=f"{now_ms - 7_200_000 + seq}-0") for seq in (1, 2)]  # 2 h ago
    recent = [add(client, state(seq)) for seq in (3, 4)]

    def tail_since(since: str, count: int) -> List[int]:
        tail = Background("tail", "--redis-url", redis_server.url, "--since", since, "--count", str(count))
        assert tail.finish() == 0
        assert tail.errors() == []
        return [json.loads(line)["seq"] for line in tail.lines()]

    assert tail_since("1h", 2) == [3, 4]
    assert tail_since("3h", 4) == [1, 2, 3, 4]
    assert tail_since("180m", 4) == [1, 2, 3, 4]
    assert tail_since(old[1], 3) == [2, 3, 4]  # from that entry on
    assert tail_since(f"({old[1]}", 2) == [3, 4]  # after it
    assert tail_since(recent[1], 1) == [4]
    # and then live
    tail = Background("tail", "--redis-url", redis_server.url, "--since", recent[0], "--count", "3")
    wait_for(lambda: len(tail.lines()) == 2, 10, "the history")
    add(client, state(5))
    assert tail.finish() == 0
    assert [json.loads(line)["seq"] for line in tail.lines()] == [3, 4, 5]


def test_tail_rejects_a_bad_since() -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["tail", "--since", "yesterday", "--redis-url", "redis://127.0.0.1:1/0"], io.StringIO(), io.StringIO())
    assert exit_.value.code == 2


def test_tail_resumes_after_a_redis_restart_without_loss(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", extra_args=["--appendonly", "yes", "--appendfsync", "always"]) as server:
        client = server.client()
        tail = Background("tail", "--redis-url", server.url, "--count", "3")
        wait_for(lambda: reading(client), 10, "tail to read the stream")
        add(client, state(1))
        wait_for(tail.lines, 10, "the first entry")
        server.stop()  # its data kept: the stream comes back as it was
        wait_for(lambda: any("Redis unreachable" in line for line in tail.errors()), 10, "tail to notice")
        server.start()
        client = server.client()
        add(client, state(2))
        add(client, state(3))
        assert tail.finish(15) == 0
        assert [json.loads(line)["seq"] for line in tail.lines()] == [1, 2, 3]
        errors = tail.errors()
        assert errors[0].startswith("raptor tail: Redis unreachable (ConnectionError: ")
        assert errors[1:] == ["raptor tail: reconnected to Redis"]


def test_tail_resumes_after_a_cut_and_says_what_retention_dropped(redis_server: RedisServer) -> None:
    client = redis_server.client()
    with TcpProxy(redis_server.port) as proxy:
        tail = Background("tail", "--redis-url", f"redis://127.0.0.1:{proxy.port}/0", "--count", "5")
        wait_for(lambda: reading(client), 10, "tail to read the stream")
        add(client, state(1))
        wait_for(tail.lines, 10, "the first entry")
        proxy.cut()
        wait_for(tail.errors, 10, "tail to notice")
        for seq in (2, 3):  # added while tail cannot read: printed once it can
            add(client, state(seq))
        proxy.start()
        wait_for(lambda: len(tail.lines()) == 3, 15, "the entries added during the cut")
        read_up_to = json.loads(tail.lines()[-1])["entry_id"]
        proxy.cut()
        wait_for(lambda: len(tail.errors()) == 3, 10, "tail to notice the second cut")
        for seq in range(4, 9):
            add(client, state(seq))
        client.xtrim(keys.FLEET_HISTORY, maxlen=2, approximate=False)  # 4-6 never read
        proxy.start()
        assert tail.finish(15) == 0
    assert [json.loads(line)["seq"] for line in tail.lines()] == [1, 2, 3, 7, 8]
    first_kept = json.loads(tail.lines()[3])["entry_id"]
    errors = tail.errors()
    assert errors[1] == errors[3] == "raptor tail: reconnected to Redis"
    assert errors[4] == (
        f"raptor tail: 3 entries after {read_up_to} lost to retention (trimmed before they were read), "
        f"resuming at {first_kept}"
    )
    assert len(errors) == 5


class Refusing:
    """A port that accepts connections and closes them at once, counting them: a Redis
    that never answers, whose attempts the test can count."""

    def __init__(self) -> None:
        self.accepted = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except OSError:
                continue
            connection.close()
            self.accepted += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()


def test_tail_waits_for_an_unreachable_redis_saying_so_once() -> None:
    refusing = Refusing()
    try:
        tail = Background("tail", "--redis-url", f"redis://127.0.0.1:{refusing.port}/0")
        wait_for(lambda: refusing.accepted >= 4, 20, "several attempts to connect")
        assert tail.finish(stop=True) == 0
    finally:
        refusing.close()
    (line,) = tail.errors()
    assert line.startswith("raptor tail: Redis unreachable (ConnectionError: ")


# -- watch -------------------------------------------------------------------------------


def test_watch_draws_the_fleet_and_stops_on_the_event(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws live only on a terminal
    monkeypatch.setenv("COLUMNS", "160")
    client = redis_server.client()
    write_host(client, "web1", {NAMES[0]: 42}, refreshed=time.time())
    watch = Background("watch", "--redis-url", redis_server.url)
    wait_for(lambda: "1 host, 1 processes" in watch.out.getvalue(), 10, "watch to draw the fleet")
    add(client, state(5, run_id="run-1", name=NAMES[0]))  # run-1's next seq
    wait_for(lambda: "105" in watch.out.getvalue(), 10, "watch to draw the change")
    assert watch.finish(stop=True) == 0


def test_watch_waits_for_an_unreachable_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis away at start (or longer than a reload period): watch shows it and retries,
    it does not end with "cannot reach Redis"."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    refusing = Refusing()
    try:
        watch = Background("watch", "--redis-url", f"redis://127.0.0.1:{refusing.port}/0")
        wait_for(lambda: refusing.accepted >= 4, 20, "several attempts to connect")
        assert watch.code is None, (watch.code, watch.errors())
        assert watch.finish(stop=True) == 0
    finally:
        refusing.close()


# -- the loop itself, as a raw recorder uses it -------------------------------------------


def test_a_raw_recorder_on_the_subscriber(redis_server: RedisServer) -> None:
    received: List[Dict[str, Any]] = []
    connects = threading.Event()
    states: List[bool] = []
    subscriber = Subscriber(make_client(redis_server.url), CHANNEL)
    stop = threading.Event()
    thread = threading.Thread(
        target=subscriber.run,
        args=(lambda message, text: received.append(message),),
        kwargs={"on_connect": connects.set, "on_state": states.append, "stop": stop, "poll": 0.05},
        daemon=True,
    )
    thread.start()
    try:
        wait_for(connects.is_set, 10, "the subscription")
        client = redis_server.client()
        client.publish(CHANNEL, "flush")
        client.publish(CHANNEL, json.dumps({"seq": 1}))
        wait_for(lambda: received, 10, "the message")
        assert received == [{"seq": 1}]
        assert (subscriber.received, subscriber.non_json, subscriber.connections) == (1, 1, 1)
        redis_server.stop(kill=True)
        redis_server.start()
        # Either the loop or redis-py's own retries reconnect: both count, both call on_connect.
        wait_for(lambda: subscriber.connections == 2, 15, "the subscriber to subscribe again")
        client = redis_server.client()
        client.publish(CHANNEL, json.dumps({"seq": 2}))
        wait_for(lambda: len(received) == 2, 10, "the message after the restart")
        assert states[0] is True
        assert subscriber.connected
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert not subscriber.connected
