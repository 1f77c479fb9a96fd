"""The listener never dies of the outside world and converges after every fault."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from .support import (
    BIN,
    Collector,
    RedisServer,
    Supervisord,
    TcpProxy,
    latest_message_differences,
    snapshot_differences,
    stored_snapshot,
    velociraptor_names,
    wait_for,
)

pytestmark = pytest.mark.integration


def start_and_settle(sup: Supervisord, redis_server: RedisServer) -> redis.Redis:
    """Start supervisord; return a client once the snapshot matches its programs."""
    sup.start()
    wait_for(sup.programs_running, 60, "programs to run")
    client = redis_server.client()
    wait_for(lambda: not snapshot_differences(client, sup.hostname, sup), 5, "snapshot after start")
    return client


def listener_pid(sup: Supervisord) -> int:
    info = sup.listener_info()
    assert info["statename"] == "RUNNING", info
    return int(info["pid"])


def measure_convergence(client, sup: Supervisord, collector: Collector, limit: float) -> float:
    """Seconds until both the snapshot and every proc's latest message match supervisord."""
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


def test_redis_down_at_start_then_back(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis")  # not started yet
    sup = Supervisord(tmp_path / "sup", velociraptor_names(20), redis_server.url)
    try:
        sup.start()
        wait_for(sup.programs_running, 30, "programs to run")
        pid = wait_for(lambda: listener_pid(sup), 10, "listener RUNNING")
        wait_for(lambda: "unavailable" in sup.listener_log(), 10, "the listener to report Redis unavailable")
        # It keeps acknowledging: supervisord is not holding events for it.
        assert "overflowed" not in sup.log_text()

        redis_server.start()
        collector = Collector(redis_server.port).start()
        try:
            client = redis_server.client()
            wait_for(lambda: not snapshot_differences(client, sup.hostname, sup), 2.5, "snapshot after Redis came up")
            # Live events flow again (a consumer that subscribed late reads the snapshot above).
            name = sup.programs[0]
            assert sup.ctl("restart", name).returncode == 0
            wanted = ["RUNNING>STOPPING", "STOPPING>STOPPED", "STOPPED>STARTING", "STARTING>RUNNING"]
            wait_for(
                lambda: (
                    [
                        f"{m['from_state']}>{m['statename']}"
                        for m in collector.snapshot()
                        if m["name"] == name and not m["resync"]
                    ][-4:]
                    == wanted
                ),
                5,
                "the restart's four transitions",
            )
        finally:
            collector.stop()
        assert listener_pid(sup) == pid, "the listener restarted"
        assert sup.listener_log().count("unavailable") == 1, "the outage must be logged once"
    finally:
        sup.stop()
        redis_server.stop()


def restart_burst(sup: Supervisord) -> subprocess.Popen[bytes]:
    """Stop every program (not the listener) in the background: 400 transitions."""
    return sup.ctl_in_background("stop", *sup.programs)


def test_redis_killed_mid_burst_converges_within_2s(tmp_path: Path, redis_server: RedisServer) -> None:
    sup = Supervisord(tmp_path / "sup", velociraptor_names(200), redis_server.url)
    collector = Collector(redis_server.port).start()
    try:
        client = start_and_settle(sup, redis_server)
        pid = listener_pid(sup)

        burst = restart_burst(sup)
        before = len(collector.snapshot())
        wait_for(lambda: len(collector.snapshot()) > before + 20, 20, "the burst to start publishing")
        redis_server.stop(kill=True)
        assert burst.wait(120) == 0
        start = sup.ctl("start", "all")
        assert start.returncode == 0, start.stderr[-2000:]
        assert sup.programs_running()
        wait_for(lambda: "unavailable" in sup.listener_log(), 10, "the listener to notice the outage")

        redis_server.start()  # empty: the listener must rebuild the snapshot from supervisord
        started = time.monotonic()
        client = redis_server.client()
        wait_for(lambda: not snapshot_differences(client, sup.hostname, sup), 2.0, "snapshot to match supervisord")
        print(f"MEASURED redis_killed converge_s={time.monotonic() - started:.3f}")
        assert listener_pid(sup) == pid, "the listener restarted"
        assert "overflowed" not in sup.log_text()
    finally:
        collector.stop()
        sup.stop()


def test_partition_mid_burst_converges_within_2s(tmp_path: Path, redis_server: RedisServer) -> None:
    """Redis unreachable for the listener only: a consumer that stayed connected converges too."""
    proxy = TcpProxy(redis_server.port).start()
    sup = Supervisord(tmp_path / "sup", velociraptor_names(200), f"redis://127.0.0.1:{proxy.port}/0")
    collector = Collector(redis_server.port).start()
    try:
        client = start_and_settle(sup, redis_server)
        pid = listener_pid(sup)

        burst = restart_burst(sup)
        before = len(collector.snapshot())
        wait_for(lambda: len(collector.snapshot()) > before + 20, 20, "the burst to start publishing")
        proxy.cut()
        assert burst.wait(120) == 0
        start = sup.ctl("start", "all")
        assert start.returncode == 0, start.stderr[-2000:]
        wait_for(lambda: "unavailable" in sup.listener_log(), 10, "the listener to notice the partition")

        proxy.start()
        elapsed = measure_convergence(client, sup, collector, 2.0)
        print(f"MEASURED partition converge_s={elapsed:.3f}")
        assert collector.connections == 1, "the consumer must have stayed subscribed for this check to mean anything"
        assert listener_pid(sup) == pid, "the listener restarted"
        messages = collector.snapshot()
        assert len({m["run_id"] for m in messages}) == 1
        # At least once: a batch whose EXEC reached Redis just before the link was cut
        # is sent again with the same seq; consumers drop seq <= last seen.
        seqs = sorted({m["seq"] for m in messages})
        assert seqs == list(range(1, len(seqs) + 1)), "a connected consumer sees no gap in seq"
    finally:
        collector.stop()
        proxy.stop()
        sup.stop()


def test_reload_is_recovered(tmp_path: Path, redis_server: RedisServer, collector: Collector) -> None:
    sup = Supervisord(tmp_path / "sup", velociraptor_names(30), redis_server.url)
    try:
        sup.start()
        wait_for(sup.programs_running, 30, "programs to run")
        client = redis_server.client()
        run_before = wait_for(lambda: client.hget("host_meta:testhost", "run_id"), 5, "meta record")
        # reload drops buffered events and removes a program that left the config.
        sup.programs = sup.programs[:-1]
        sup.write_config()
        result = sup.ctl("reload")
        assert result.returncode == 0, result.stderr[-2000:]
        wait_for(lambda: sup.rpc().supervisor.getState()["statename"] == "RUNNING", 30, "supervisord back")
        wait_for(sup.programs_running, 30, "programs to run again")
        measure_convergence(client, sup, collector, 5.0)
        assert client.hget("host_meta:testhost", "run_id") != run_before
        removed = velociraptor_names(30)[-1]
        assert removed not in stored_snapshot(client, "testhost")
        gone = [m for m in collector.snapshot() if m["name"] == removed and m["event"] == "PROCESS_GROUP_REMOVED"]
        assert gone and gone[-1]["id"] == f"testhost-{removed}"
    finally:
        sup.stop()


def test_group_removed_and_added(tmp_path: Path, redis_server: RedisServer, collector: Collector) -> None:
    names = velociraptor_names(3)
    sup = Supervisord(tmp_path / "sup", names, redis_server.url)
    try:
        sup.start()
        wait_for(sup.programs_running, 30, "programs to run")
        client = redis_server.client()
        sup.programs = [*names[:2], "extra-v9-prod-abcdef12-worker-7000"]
        sup.write_config()
        assert sup.ctl("update").returncode == 0
        wait_for(sup.programs_running, 30, "programs to run after update")
        removal = wait_for(
            lambda: [m for m in collector.snapshot() if m["event"] == "PROCESS_GROUP_REMOVED"], 5, "a removal"
        )[0]
        assert removal["name"] == names[2]
        assert removal["id"] == f"testhost-{names[2]}"
        assert removal["payload_headers"] == {"groupname": names[2]}
        assert removal["payload_data"] == ""
        assert (removal["app_name"], removal["port"]) == ("node_example", 5002)
        measure_convergence(client, sup, collector, 2.0)
        assert not [m for m in collector.snapshot() if m["event"] == "PROCESS_GROUP_ADDED"]
    finally:
        sup.stop()


def test_non_ascii_process_names(tmp_path: Path, redis_server: RedisServer, collector: Collector) -> None:
    names = ["café-v1-prod-abc123-wëb-5000", "日本語プロセス"]
    sup = Supervisord(tmp_path / "sup", names, redis_server.url)
    try:
        sup.start()
        wait_for(sup.programs_running, 30, "programs to run")
        latest = wait_for(
            lambda: (
                {m["name"]: m for m in collector.snapshot() if not m["resync"] and m["statename"] == "RUNNING"}.keys()
                >= set(names)
                and collector.latest_by_name()
            ),
            10,
            "RUNNING events for both",
        )
        cafe = latest[names[0]]
        assert (cafe["app_name"], cafe["proc_name"], cafe["port"]) == ("café", "wëb", 5000)
        assert latest[names[1]]["app_name"] == names[1]
        assert latest[names[1]]["version"] == "UNKNOWN"
        measure_convergence(redis_server.client(), sup, collector, 2.0)
    finally:
        sup.stop()


def test_works_without_supervisor_rpc(tmp_path: Path, redis_server: RedisServer, collector: Collector) -> None:
    names = velociraptor_names(5)
    sup = Supervisord(tmp_path / "sup", names, redis_server.url, with_rpc=False)
    try:
        sup.start()
        wait_for(
            lambda: {m["name"] for m in collector.snapshot() if m["statename"] == "RUNNING"} >= set(names),
            30,
            "RUNNING messages without RPC",
        )
        client = redis_server.client()
        stored = wait_for(
            lambda: (
                (s := stored_snapshot(client, "testhost"))
                and all(s.get(n, {}).get("statename") == "RUNNING" for n in names)
                and s
            ),
            5,
            "snapshot from the listener's own state",
        )
        assert all(stored[n]["pid"] > 0 for n in names)
        assert sup.listener_log().count("SUPERVISOR_SERVER_URL is not set") == 1
    finally:
        sup.stop()


def test_password_never_reaches_a_log(tmp_path: Path) -> None:
    password = "s3cr3t-pa55word"
    redis_server = RedisServer(tmp_path / "redis", password=password).start()
    sup = Supervisord(tmp_path / "sup", velociraptor_names(5), redis_server.url)
    try:
        sup.start()
        wait_for(sup.programs_running, 30, "programs to run")
        client = redis_server.client()
        wait_for(lambda: not snapshot_differences(client, "testhost", sup), 5, "snapshot with auth")
        # Make every reconnect fail on authentication, then on connection.
        client.config_set("requirepass", "another-one")
        client.client_kill_filter(_type="normal", skipme=True)
        sup.ctl("restart", sup.programs[0])
        wait_for(lambda: "unavailable" in sup.listener_log(), 10, "the auth failure to be logged")
        redis_server.stop(kill=True)
        sup.ctl("restart", sup.programs[1])
        logs = sup.listener_log() + sup.log_text()
        assert "***" in logs, "the URL is logged redacted"
        assert password not in logs
        assert "another-one" not in logs
    finally:
        sup.stop()
        redis_server.stop()


def run_publisher(env: dict, stdin: str = "", timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "proc_publisher")],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", **env},
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SUPERVISOR_ENABLED": "1"}, "REDIS_URL"),
        ({"SUPERVISOR_ENABLED": "1", "REDIS_URL": "http://user:hunter2@h:6379"}, "REDIS_URL"),
        ({"SUPERVISOR_ENABLED": "1", "REDIS_URL": "redis://:hunter2@host:notaport/0"}, "REDIS_URL"),
        ({"SUPERVISOR_ENABLED": "1", "REDIS_URL": "redis://:hunter2@host:6379/zero"}, "REDIS_URL"),
        ({"SUPERVISOR_ENABLED": "1", "REDIS_URL": "redis://:hunter2@/0"}, "REDIS_URL"),
        ({"SUPERVISOR_ENABLED": "1", "REDIS_URL": "rediss://:hunter2@h:6379/0?ssl_cert_reqs=maybe"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://:hunter2@127.0.0.1:6379/0"}, "SUPERVISOR_ENABLED"),
        ({"SUPERVISOR_ENABLED": "1", "REDIS_URL": "redis://h:1/0", "RAPTOR_SNAPSHOT_TTL": "10"}, "RAPTOR_SNAPSHOT_TTL"),
    ],
)
def test_bad_configuration_is_one_clear_line(env: dict, variable: str) -> None:
    result = run_publisher(env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"proc_publisher: {variable} ")
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == "", "nothing but protocol tokens on stdout"


def test_stdout_carries_only_protocol_tokens_whatever_the_input(tmp_path: Path, redis_server: RedisServer) -> None:
    payload = "processname:café-v1-x-h-wëb-1 groupname:café-v1-x-h-wëb-1 from_state:STARTING pid:42"
    events = [
        f"ver:3.0 server:supervisor serial:1 pool:p poolserial:1 eventname:PROCESS_STATE_RUNNING len:{len(payload)}\n"
        + payload,
        "this is not a header\n",
        "ver:3.0 eventname:PROCESS_STATE_RUNNING len:9\nnot:valid",
        "ver:3.0 eventname:SOMETHING_NEW len:3\nabc",
        "ver:3.0 eventname:TICK_60 len:15\nwhen:1700000000",
    ]
    env = {"SUPERVISOR_ENABLED": "1", "REDIS_URL": redis_server.url, "HOSTNAME": "h1"}
    result = run_publisher(env, stdin="".join(events))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "READY\n" + "RESULT 2\nOKREADY\n" * len(events)
    stored = wait_for(lambda: stored_snapshot(redis_server.client(), "h1"), 5, "the snapshot")
    assert stored["café-v1-x-h-wëb-1"]["pid"] == 42


def test_acks_do_not_wait_for_a_frozen_redis(tmp_path: Path, redis_server: RedisServer) -> None:
    """The event path does no network I/O: a Redis that never answers cannot slow an ack."""
    env = {"PATH": "/usr/bin:/bin", "SUPERVISOR_ENABLED": "1", "REDIS_URL": redis_server.url, "HOSTNAME": "h"}
    publisher = subprocess.Popen(
        [str(BIN / "proc_publisher")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
        encoding="utf-8",
    )
    assert publisher.stdin and publisher.stdout
    try:
        assert publisher.stdout.readline() == "READY\n"
        wait_for(lambda: redis_server.client().exists("host_meta:h"), 5, "the listener to reach Redis")
        assert redis_server.process is not None
        redis_server.process.send_signal(signal.SIGSTOP)  # accepts connections, never answers
        worst = 0.0
        for i in range(400):
            to_state = ("STARTING", "RUNNING")[i % 2]
            payload = f"processname:p{i % 50} groupname:p{i % 50} from_state:STOPPED pid:{i}"
            header = f"ver:3.0 server:supervisor serial:{i} pool:p poolserial:{i} eventname:PROCESS_STATE_{to_state}"
            started = time.perf_counter()
            publisher.stdin.write(f"{header} len:{len(payload)}\n{payload}")
            publisher.stdin.flush()
            assert publisher.stdout.read(len("RESULT 2\nOK")) == "RESULT 2\nOK"
            worst = max(worst, time.perf_counter() - started)
            assert publisher.stdout.readline() == "READY\n"
        print(f"MEASURED worst ack round trip with Redis frozen: {worst * 1000:.2f} ms")
        # Redis' socket timeout is 5 s: any Redis call on the event path would show here.
        assert worst < 0.5
    finally:
        if redis_server.process is not None:
            redis_server.process.send_signal(signal.SIGCONT)
        publisher.stdin.close()
        publisher.wait(15)


def test_idle_listener_republishes_after_redis_restarts_empty(tmp_path: Path, redis_server: RedisServer) -> None:
    """No event during the outage: the listener still notices and rebuilds its snapshot."""
    sup = Supervisord(tmp_path / "sup", velociraptor_names(5), redis_server.url)
    try:
        start_and_settle(sup, redis_server)
        redis_server.stop(kill=True)
        redis_server.start()  # empty, and nothing happens on the host
        started = time.monotonic()
        wait_for(lambda: not snapshot_differences(redis_server.client(), sup.hostname, sup), 2.0, "snapshot rebuilt")
        print(f"MEASURED idle converge_s={time.monotonic() - started:.3f}")
        client = redis_server.client()
        client.flushall()  # the same for a flush or an eviction
        wait_for(lambda: not snapshot_differences(client, sup.hostname, sup), 2.0, "snapshot rebuilt after FLUSHALL")
    finally:
        sup.stop()


def test_listener_killed_mid_burst_converges(tmp_path: Path, redis_server: RedisServer) -> None:
    """A crash loses what the dead listener had queued; the next run's resync restores it."""
    sup = Supervisord(tmp_path / "sup", velociraptor_names(100), redis_server.url, group="fleet")
    try:
        client = start_and_settle(sup, redis_server)
        old = listener_pid(sup)
        burst = sup.ctl_in_background("restart", "fleet:*")
        time.sleep(0.3)
        os.kill(old, signal.SIGKILL)
        assert burst.wait(120) == 0
        wait_for(sup.programs_running, 60, "programs to run")
        new = wait_for(lambda: listener_pid(sup) != old and listener_pid(sup), 10, "supervisord to restart it")
        assert new != old
        wait_for(lambda: not snapshot_differences(client, sup.hostname, sup), 3, "snapshot after the crash")
        assert sup.listener_info()["statename"] == "RUNNING"
    finally:
        sup.stop()
