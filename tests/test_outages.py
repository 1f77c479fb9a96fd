"""The listener never dies of Redis going away, and converges once it is back."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness import (
    BIN,
    Collector,
    RedisServer,
    Supervisord,
    Supervisords,
    TcpProxy,
    measure_convergence,
    settled,
    snapshot_differences,
    velociraptor_names,
    wait_for,
)
from raptor.keys import meta_key

pytestmark = pytest.mark.integration


def test_redis_down_at_start_then_back(tmp_path: Path, start_supervisord: Supervisords) -> None:
    redis_server = RedisServer(tmp_path / "redis")  # not started yet
    sup = start_supervisord(velociraptor_names(20), redis_server.url)
    wait_for(sup.programs_running, 30, "programs to run")
    pid = wait_for(sup.listener_pid, 10, "listener RUNNING")
    wait_for(lambda: "unavailable" in sup.listener_log(), 10, "the listener to report Redis unavailable")
    # It keeps acknowledging: supervisord is not holding events for it.
    assert "overflowed" not in sup.log_text()

    with redis_server.start():  # up from here; stopped at the end of the block
        with Collector(redis_server.port) as collector:
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
        assert sup.listener_pid() == pid, "the listener restarted"
        assert sup.listener_log().count("unavailable") == 1, "the outage must be logged once"


def restart_burst(sup: Supervisord) -> subprocess.Popen[bytes]:
    """Stop every program (not the listener) in the background: 400 transitions."""
    return sup.ctl_in_background("stop", *sup.programs)


@pytest.mark.parametrize("fault", ["redis_killed", "partition"])
def test_outage_mid_burst_converges_within_2s(
    fault: str, redis_server: RedisServer, collector: Collector, start_supervisord: Supervisords
) -> None:
    """Redis killed mid-burst (it comes back empty: the listener must rebuild the
    snapshot from supervisord), or unreachable for the listener only (a partition: a
    consumer that stayed connected converges too)."""
    killed = fault == "redis_killed"
    with TcpProxy(redis_server.port) as proxy:  # the partition's way to Redis
        url = redis_server.url if killed else f"redis://127.0.0.1:{proxy.port}/0"
        sup = start_supervisord(velociraptor_names(200), url)
        client = settled(sup, redis_server)
        pid = sup.listener_pid()

        burst = restart_burst(sup)
        before = len(collector.snapshot())
        wait_for(lambda: len(collector.snapshot()) > before + 20, 20, "the burst to start publishing")
        if killed:
            redis_server.stop(kill=True)
        else:
            proxy.cut()
        assert burst.wait(120) == 0
        start = sup.ctl("start", "all")
        assert start.returncode == 0, start.stderr[-2000:]
        if killed:
            assert sup.programs_running()
        outage = "outage" if killed else "partition"
        wait_for(lambda: "unavailable" in sup.listener_log(), 10, f"the listener to notice the {outage}")

        if killed:
            redis_server.start()  # empty
            started = time.monotonic()
            client = redis_server.client()
            wait_for(lambda: not snapshot_differences(client, sup.hostname, sup), 2.0, "snapshot to match supervisord")
            elapsed = time.monotonic() - started
        else:
            proxy.start()
            elapsed = measure_convergence(client, sup, collector, 2.0)
        print(f"MEASURED {fault} converge_s={elapsed:.3f}")
        assert sup.listener_pid() == pid, "the listener restarted"
        if killed:
            assert "overflowed" not in sup.log_text()
            return
        assert collector.connections == 1, "the consumer must have stayed subscribed for this check to mean anything"
        messages = collector.snapshot()
        assert len({m["run_id"] for m in messages}) == 1
        # At least once: a batch whose EXEC reached Redis just before the link was cut
        # is sent again with the same seq; consumers drop seq <= last seen.
        seqs = sorted({m["seq"] for m in messages})
        assert seqs == list(range(1, len(seqs) + 1)), "a connected consumer sees no gap in seq"


def test_acks_do_not_wait_for_a_frozen_redis(redis_server: RedisServer) -> None:
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
        wait_for(lambda: redis_server.client().exists(meta_key("h")), 5, "the listener to reach Redis")
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


def test_idle_listener_republishes_after_redis_restarts_empty(
    redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    """No event during the outage: the listener still notices and rebuilds its snapshot."""
    sup = start_supervisord(velociraptor_names(5), redis_server.url)
    settled(sup, redis_server)
    redis_server.stop(kill=True)
    redis_server.start()  # empty, and nothing happens on the host
    started = time.monotonic()
    wait_for(lambda: not snapshot_differences(redis_server.client(), sup.hostname, sup), 2.0, "snapshot rebuilt")
    print(f"MEASURED idle converge_s={time.monotonic() - started:.3f}")
    client = redis_server.client()
    client.flushall()  # the same for a flush or an eviction
    wait_for(lambda: not snapshot_differences(client, sup.hostname, sup), 2.0, "snapshot rebuilt after FLUSHALL")
