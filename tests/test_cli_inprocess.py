"""``raptor`` driven in-process, ``main(argv, out, err, stop)``, against a real redis-server.

Snapshots and meta records are written with raptor.keys' helpers; ``tail`` and
``watch`` run in a thread and end through ``--count`` or the ``stop`` event, and
every wait has a deadline.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest
import redis

from harness import RedisServer, free_port, wait_for
from raptor import keys
from raptor.consumer.cli import main
from raptor.consumer.follow import Subscriber, make_client

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


def state(seq: int, *, host: str = "web1", run_id: str = "run-a", name: str = "worker") -> Dict[str, Any]:
    return {"event": "PROCESS_STATE_RUNNING", "host": host, "name": name, "statename": "RUNNING",
            "from_state": "STARTING", "pid": 100 + seq, "now": "2026-11-24T13:18:22+00:00",
            "run_id": run_id, "seq": seq}  # fmt: skip


# -- status ------------------------------------------------------------------------------


def test_status_table(redis_server: RedisServer) -> None:
    client = redis_server.client()
    now = time.time()
    write_host(client, "web1", {NAMES[0]: 42, NAMES[1]: 0}, refreshed=now - 5)
    write_host(client, "gone", {"x": 7}, refreshed=now - 500)
    code, out, err = run("status", "--redis-url", redis_server.url)
    assert (code, err) == (0, "")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["HOST", "PROCS", "RUNNING", "STOPPED", "REFRESHED", "STATUS"]
    assert rows[1][:4] == ["gone", "1", "1", "0"]
    assert rows[1][-1] == "STALE"
    assert rows[2][:4] == ["web1", "2", "1", "1"]
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


def test_tail_prints_what_is_published_while_it_runs(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.publish(CHANNEL, json.dumps(state(1)))  # before tail: nobody hears it
    tail = Background("tail", "--redis-url", redis_server.url, "--event", "PROCESS_STATE_*", "--count", "3")
    wait_for(lambda: subscribed(client), 10, "tail to subscribe")
    texts = [json.dumps(state(seq), indent=None, separators=(", ", ": ")) for seq in (2, 4, 5)]
    client.publish(CHANNEL, "flush")  # other subscribers' plain strings: skipped
    client.publish(CHANNEL, texts[0])
    client.publish(CHANNEL, json.dumps({"event": "PROCESS_GROUP_REMOVED", "host": "web1", "name": "x",
                                        "run_id": "run-a", "seq": 3}))  # fmt: skip
    client.publish(CHANNEL, texts[1])
    client.publish(CHANNEL, texts[2])
    assert tail.finish() == 0
    assert tail.lines() == texts  # as published, byte for byte; the removal filtered out
    assert tail.errors() == []


def test_tail_line_format_and_host_filter(redis_server: RedisServer) -> None:
    client = redis_server.client()
    tail = Background("tail", "--redis-url", redis_server.url, "--host", "db*", "--format", "line")
    wait_for(lambda: subscribed(client), 10, "tail to subscribe")
    client.publish(CHANNEL, json.dumps(state(1, host="web1")))
    client.publish(CHANNEL, json.dumps(state(1, host="db1")))
    wait_for(tail.lines, 10, "tail to print")
    assert tail.finish(stop=True) == 0  # the stop event ends a tail without --count
    assert tail.lines() == ["13:18:22  db1  worker  STARTING -> RUNNING (pid 101)"]


def test_tail_says_how_many_messages_of_a_run_it_missed(redis_server: RedisServer) -> None:
    client = redis_server.client()
    tail = Background("tail", "--redis-url", redis_server.url, "--count", "7")
    wait_for(lambda: subscribed(client), 10, "tail to subscribe")
    # web1: 3-4 lost, 5 re-sent (not a gap), then a new run (nothing known of it);
    # web2 joins mid-run (nothing known before it), then loses 9.
    sent = [("web1", "run-a", 1), ("web1", "run-a", 2), ("web2", "run-x", 7), ("web1", "run-a", 5),
            ("web1", "run-a", 5), ("web1", "run-b", 7), ("web2", "run-x", 9)]  # fmt: skip
    for host, run_id, seq in sent:
        client.publish(CHANNEL, json.dumps(state(seq, host=host, run_id=run_id)))
    assert tail.finish() == 0
    assert [json.loads(line)["seq"] for line in tail.lines()] == [1, 2, 7, 5, 5, 7, 9]
    assert tail.errors() == [
        "raptor tail: 2 messages from web1 missed before seq 5",
        "raptor tail: 1 messages from web2 missed before seq 9",
    ]


def test_tail_reconnects_after_a_redis_restart_and_counts_what_it_lost(redis_server: RedisServer) -> None:
    client = redis_server.client()
    tail = Background("tail", "--redis-url", redis_server.url, "--count", "2")
    wait_for(lambda: subscribed(client), 10, "tail to subscribe")
    client.publish(CHANNEL, json.dumps(state(1)))
    wait_for(tail.lines, 10, "the first message")
    redis_server.stop(kill=True)
    wait_for(lambda: any("Redis unreachable" in line for line in tail.errors()), 10, "tail to notice")
    redis_server.start()
    client = redis_server.client()
    wait_for(lambda: subscribed(client), 15, "tail to subscribe again")
    client.publish(CHANNEL, json.dumps(state(4)))  # 2 and 3 went out while Redis was away
    assert tail.finish() == 0
    assert [json.loads(line)["seq"] for line in tail.lines()] == [1, 4]
    errors = tail.errors()
    assert errors[0].startswith("raptor tail: Redis unreachable (ConnectionError: ")
    assert errors[1:] == ["raptor tail: reconnected to Redis", "raptor tail: 2 messages from web1 missed before seq 4"]


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
    client.publish(CHANNEL, json.dumps(state(5, run_id="run-1", name=NAMES[0])))  # run-1's next seq
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
