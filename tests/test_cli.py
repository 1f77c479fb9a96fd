"""The fleet view against real publishers: status, tail, history, follow, watch rendering."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from rich.console import Console

from harness import (
    BIN,
    ListenerSpec,
    RedisServer,
    Supervisord,
    Supervisords,
    TcpProxy,
    snapshot_differences,
    velociraptor_names,
    wait_for,
)
from raptor.consumer.cli import format_line
from raptor.consumer.fleet import Apply, Fleet
from raptor.consumer.follow import Follower, make_client, next_message
from raptor.consumer.watch import describe_live, render
from raptor.keys import DEFAULT_CHANNEL as CHANNEL
from raptor.keys import FLEET_HISTORY, meta_key, snapshot_key

pytestmark = pytest.mark.integration


def raptor(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "raptor"), *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def two_names(redis_server: RedisServer, start_supervisord: Supervisords) -> Supervisord:
    """One supervisord publishing under two names: the hostname-mismatch bug."""
    sup = start_supervisord(
        velociraptor_names(6),
        redis_server.url,
        listener=ListenerSpec(hosts={"proc_publisher": "web1", "old_publisher": "web1.example.com"}),
    )
    wait_for(sup.programs_running, 30, "programs to run")
    client = redis_server.client()
    for host in ("web1", "web1.example.com"):
        wait_for(lambda h=host: not snapshot_differences(client, h, sup), 5, f"snapshot of {host}")
    return sup


def test_status_reports_the_duplicate_pair_and_exits_1(two_names: Supervisord, redis_server: RedisServer) -> None:
    result = raptor("status", "--json", "--redis-url", redis_server.url)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["duplicates"] == [["web1", "web1.example.com"]]
    hosts = {h["host"]: h for h in report["hosts"]}
    assert set(hosts) == {"web1", "web1.example.com"}
    web1 = hosts["web1"]
    assert web1["stale"] is False
    assert web1["counts"]["RUNNING"] == 8  # six programs and the two listeners
    assert {p["name"] for p in web1["procs"]} >= set(two_names.programs)
    text = raptor("status", "--redis-url", redis_server.url)
    assert text.returncode == 1
    assert "DUPLICATE: web1 and web1.example.com" in text.stdout
    # decided on the listeners' common supervisord, not on pids
    assert web1["supervisord_id"]
    assert web1["supervisord_id"] == hosts["web1.example.com"]["supervisord_id"]
    assert [d["basis"] for d in report["duplicate_basis"]] == ["supervisord_id"]


def test_status_of_a_healthy_fleet(redis_server: RedisServer, start_supervisord: Supervisords) -> None:
    sup = start_supervisord([*velociraptor_names(4), "other"], redis_server.url, hostname="web2")
    wait_for(sup.programs_running, 30, "programs to run")
    client = redis_server.client()
    wait_for(lambda: not snapshot_differences(client, "web2", sup), 5, "snapshot")
    # A host whose publisher went away long ago.
    client.hset(snapshot_key("gone"), "x", json.dumps({"name": "x", "statename": "RUNNING", "pid": 1}))
    client.hset(meta_key("gone"), mapping={"refreshed": time.time() - 500, "run_id": "r", "seq": 3})
    result = raptor("status", "--redis-url", redis_server.url)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["HOST", "PROCS", "RUNNING"]
    assert lines[1].split()[:3] == ["gone", "1", "1"]
    assert lines[1].split()[-1] == "STALE"
    assert lines[2].split()[:3] == ["web2", "6", "6"]
    assert lines[2].split()[-1] == "ok"
    detail = raptor("status", "--redis-url", redis_server.url, "--app", "node_example")
    summary, procs = detail.stdout.split("\n\n", 1)
    assert summary.splitlines()[1].split()[:2] == ["web2", "4"]
    rows = [line.split() for line in procs.splitlines()[1:]]
    assert {row[1] for row in rows} == set(sup.programs[:4])
    assert {row[2] for row in rows} == {"RUNNING"}
    as_json = json.loads(raptor("status", "--json", "--redis-url", redis_server.url, "--host", "web*").stdout)
    assert [h["host"] for h in as_json["hosts"]] == ["web2"]


def stream_end(client: Any) -> str:
    """The id of the history's last entry (the publisher has written some)."""
    ((entry_id, _),) = client.xrevrange(FLEET_HISTORY, count=1)
    return str(entry_id.decode())


def test_tail_prints_json_lines_and_skips_foreign_entries(
    redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    sup = start_supervisord(velociraptor_names(2), redis_server.url, hostname="web3")
    wait_for(sup.programs_running, 30, "programs to run")
    client = redis_server.client()
    wait_for(lambda: not snapshot_differences(client, "web3", sup), 10, "snapshot")
    since = "(" + stream_end(client)  # what comes after: no waiting for tail to be ready
    client.xadd(FLEET_HISTORY, {"not": "raptor's"})
    assert sup.ctl("restart", sup.programs[0]).returncode == 0
    tail = raptor("tail", "--redis-url", redis_server.url, "--since", since, "--event", "PROCESS_STATE_*",
                  "--count", "4")  # fmt: skip
    assert tail.returncode == 0, tail.stderr
    events = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [e["statename"] for e in events] == ["STOPPING", "STOPPED", "STARTING", "RUNNING"]
    assert {e["host"] for e in events} == {"web3"}
    assert {e["name"] for e in events} == {sup.programs[0]}
    (skipped,) = tail.stderr.splitlines()
    assert skipped.startswith("raptor tail: skipping history entries that are not raptor's (the first: ")


def test_history_and_status_count_a_real_publishers_restarts(
    redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    sup = start_supervisord(velociraptor_names(2), redis_server.url, hostname="web5")
    wait_for(sup.programs_running, 30, "programs to run")
    client = redis_server.client()
    program = sup.programs[1]
    for _ in range(2):
        assert sup.ctl("restart", program).returncode == 0
    wait_for(lambda: not snapshot_differences(client, "web5", sup), 10, "snapshot")
    history = raptor("history", "web5", program, "--json", "--redis-url", redis_server.url)
    assert history.returncode == 0, history.stderr
    (summary,) = json.loads(history.stdout)["processes"]
    assert (summary["process"], summary["restarts"], summary["crashes"], summary["state"]) == (
        program, 2, 0, "RUNNING"
    )  # fmt: skip
    status = raptor("status", "--redis-url", redis_server.url, "--host", "web5")
    assert status.returncode == 0, status.stderr
    summary_table, procs = status.stdout.split("\n\n")
    header, row = (line.split() for line in summary_table.splitlines())
    assert row[header.index("RESTARTS")] == "2"
    restarts = {line.split()[1]: line.split()[4] for line in procs.splitlines()[1:]}
    assert restarts[program] == "2"
    assert restarts[sup.programs[0]] == "0"


def test_a_message_arriving_in_parts_is_read_whole_and_nothing_is_dropped(redis_server: RedisServer) -> None:
    """A busy Redis writes a big MULTI/EXEC's messages in pieces. redis-py 8's
    get_message(timeout) gives up mid-message and reconnects, dropping the batch;
    next_message() must wait for the whole message instead."""
    with TcpProxy(redis_server.port) as proxy:
        subscriber = make_client(f"redis://127.0.0.1:{proxy.port}/0")
        pubsub = subscriber.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(CHANNEL)
        publisher = redis_server.client()
        wait_for(lambda: publisher.pubsub_numsub(CHANNEL)[0][1] == 1, 5, "the subscriber to subscribe")
        received: List[int] = []

        def drain(until: int) -> None:
            deadline = time.monotonic() + 10
            while (not received or received[-1] < until) and time.monotonic() < deadline:
                raw = next_message(pubsub, 0.1)
                if raw is not None:
                    received.append(json.loads(raw["data"])["seq"])

        publisher.publish(CHANNEL, json.dumps({"seq": 1}))
        drain(1)
        proxy.stall_next_reply(0.6)  # six times the wait given to next_message
        batch = publisher.pipeline(transaction=True)
        for seq in range(2, 101):
            batch.publish(CHANNEL, json.dumps({"seq": seq, "padding": "x" * 200}))
        batch.execute()
        drain(100)
        publisher.publish(CHANNEL, json.dumps({"seq": 101}))
        drain(101)
        assert received == list(range(1, 102))
        pubsub.close()


def test_follower_survives_a_redis_restart_and_resyncs(
    redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    sup = start_supervisord(velociraptor_names(5), redis_server.url, hostname="web4")
    follower = Follower(make_client(redis_server.url))
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, kwargs={"should_stop": stop.is_set, "poll": 0.05}, daemon=True)
    try:
        wait_for(sup.programs_running, 30, "programs to run")
        thread.start()

        def converged() -> bool:
            host = follower.fleet.hosts.get("web4")
            truth = sup.truth()
            return host is not None and all(
                host.procs.get(n, {}).get("pid") == info["pid"] for n, info in truth.items()
            )

        wait_for(converged, 5, "the follower to see the fleet")
        redis_server.stop(kill=True)
        wait_for(lambda: not follower.connected, 5, "the follower to notice")
        assert sup.ctl("restart", sup.programs[0], sup.programs[1]).returncode == 0
        redis_server.start()
        wait_for(converged, 5, "the follower to resync after Redis came back")
        assert sup.ctl("restart", sup.programs[2]).returncode == 0
        wait_for(converged, 5, "live updates after the restart")
    finally:
        stop.set()
        thread.join(5)


def message(seq: int, run_id: str = "r1", name: str = "a", state: str = "RUNNING") -> Dict[str, Any]:
    return {"event": f"PROCESS_STATE_{state}", "host": "h", "name": name, "statename": state, "pid": seq,
            "seq": seq, "run_id": run_id}  # fmt: skip


def test_apply_detects_duplicates_gaps_and_restarts() -> None:
    fleet = Fleet()
    verdicts: List[str] = [fleet.apply(message(s)) for s in (1, 2, 2, 4)]
    assert verdicts == [Apply.APPLIED, Apply.APPLIED, Apply.DUPLICATE, Apply.RESYNC]
    assert fleet.apply(message(1, run_id="r2")) == Apply.RESYNC
    assert fleet.apply({"event": "PROCESS_GROUP_REMOVED", "host": "h", "name": "a", "seq": 2, "run_id": "r2"}) == (
        Apply.APPLIED
    )
    assert "a" not in fleet.hosts["h"].procs
    assert fleet.apply({"no": "fields"}) == Apply.IGNORED
    # Velociraptor's own publisher sends no seq: every message applies.
    assert fleet.apply({"event": "PROCESS_STATE_STOPPED", "host": "v", "name": "b"}) == Apply.APPLIED


def test_duplicates_need_many_shared_pids_not_one() -> None:
    """The guess for hosts whose listener publishes no supervisord_id (older ones)."""
    fleet = Fleet()
    for host, pids in (("a", [10, 11, 12, 13]), ("b", [10, 11, 12, 13]), ("c", [10, 90, 91, 92])):
        snapshot = {
            f"p{i}": json.dumps({"name": f"p{i}", "statename": "RUNNING", "pid": pid}) for i, pid in enumerate(pids)
        }
        fleet.hosts[host] = Fleet._host(host, snapshot, {"run_id": "r", "seq": "1"}, 600, time.time())
    assert fleet.duplicates() == [("a", "b")]


def test_watch_renders_states_highlights_and_duplicates() -> None:
    fleet = Fleet()
    fleet.apply(message(1, name="web", state="RUNNING"))
    fleet.apply(message(2, name="worker", state="FATAL"))
    console = Console(record=True, width=120)
    now = time.time()
    console.print(render(fleet, {"h-worker": now}, host_glob=None, app=None, now=now, status="live"))
    text = console.export_text()
    assert "2 processes" in text
    assert "FATAL" in text
    assert "worker" in text
    assert "stale" in text  # no snapshot refresh seen for host h


def test_tail_line_format() -> None:
    line = format_line({**message(4), "now": "2026-11-24T13:18:22+00:00", "from_state": "STARTING", "pid": 42})
    assert line == "13:18:22  h  a  STARTING -> RUNNING (pid 42)"
    removed = {"event": "PROCESS_GROUP_REMOVED", "host": "h", "name": "a", "time": "2026-11-24T13:18:22+00:00"}
    assert format_line(removed) == "13:18:22  h  a  removed"


def test_bad_or_unreachable_redis_is_a_clear_error(tmp_path: Path) -> None:
    bad = raptor("status", "--redis-url", "http://nope")
    assert bad.returncode == 2
    assert "scheme" in bad.stderr
    down = raptor("status", "--redis-url", "redis://:secret@127.0.0.1:1/0")
    assert down.returncode == 2
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in down.stderr
    assert "secret" not in down.stderr


def test_watch_counts_uptime_live() -> None:
    proc = {"statename": "RUNNING", "pid": 7, "start_time": "2026-11-24T13:00:00+00:00", "description": "old"}
    now = 1795525200.0 + 3725  # 2026-11-24T13:00:00Z + 1:02:05
    assert describe_live(proc, now) == "pid 7, uptime 1:02:05"
    assert describe_live({"statename": "STOPPED", "description": "Nov 24 01:00 PM"}, now) == "Nov 24 01:00 PM"


def test_history_does_not_count_the_time_before_a_process_existed_as_not_running(
    redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    """Issue 25, finding 3: `raptor history HOST PROGRAM --since 1h` a few seconds after
    supervisord started its program: NOT RUNNING is its STARTING (startsecs 1), not the
    hour before the program existed."""
    sup = start_supervisord(velociraptor_names(1), redis_server.url, hostname="web6")
    wait_for(sup.programs_running, 30, "the program to run")
    client = redis_server.client()
    wait_for(lambda: not snapshot_differences(client, "web6", sup), 10, "snapshot")
    program = sup.programs[0]
    history = raptor("history", "web6", program, "--since", "1h", "--redis-url", redis_server.url)
    assert history.returncode == 0, history.stderr
    summary = history.stdout.rstrip("\n").split("\n\n")[-1].splitlines()
    assert summary[0].split() == ["PROCESS", "RESTARTS", "CRASHES", "NOT", "RUNNING", "STATE"]
    (row,) = (line.split() for line in summary[1:])
    assert row[0] == program and row[-1] == "RUNNING", row
    assert row[3] in ("0:00:00", "0:00:01", "0:00:02"), f"NOT RUNNING {row[3]}: its STARTING second(s) only"
