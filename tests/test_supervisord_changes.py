"""Whatever supervisord does (reload, update, odd names, no RPC, a killed listener),
the snapshot and the messages converge on its own answer."""

from __future__ import annotations

import os
import signal
import time

import pytest

from harness import (
    Collector,
    ProgramSpec,
    RedisServer,
    Supervisords,
    measure_convergence,
    settled,
    snapshot_differences,
    stored_snapshot,
    velociraptor_names,
    wait_for,
)
from raptor.keys import META_RUN_ID, meta_key

pytestmark = pytest.mark.integration


def test_reload_is_recovered(redis_server: RedisServer, collector: Collector, start_supervisord: Supervisords) -> None:
    sup = start_supervisord(velociraptor_names(30), redis_server.url)
    wait_for(sup.programs_running, 30, "programs to run")
    client = redis_server.client()
    run_before = wait_for(lambda: client.hget(meta_key("testhost"), META_RUN_ID), 5, "meta record")
    # reload drops buffered events and removes a program that left the config.
    sup.programs = sup.programs[:-1]
    sup.write_config()
    result = sup.ctl("reload")
    assert result.returncode == 0, result.stderr[-2000:]
    wait_for(lambda: sup.rpc().supervisor.getState()["statename"] == "RUNNING", 30, "supervisord back")
    wait_for(sup.programs_running, 30, "programs to run again")
    measure_convergence(client, sup, collector, 5.0)
    assert client.hget(meta_key("testhost"), META_RUN_ID) != run_before
    removed = velociraptor_names(30)[-1]
    assert removed not in stored_snapshot(client, "testhost")
    gone = [m for m in collector.snapshot() if m["name"] == removed and m["event"] == "PROCESS_GROUP_REMOVED"]
    assert gone and gone[-1]["id"] == f"testhost-{removed}"


def test_group_removed_and_added(
    redis_server: RedisServer, collector: Collector, start_supervisord: Supervisords
) -> None:
    names = velociraptor_names(3)
    sup = start_supervisord(names, redis_server.url)
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


def test_non_ascii_process_names(
    redis_server: RedisServer, collector: Collector, start_supervisord: Supervisords
) -> None:
    names = ["café-v1-prod-abc123-wëb-5000", "日本語プロセス"]
    sup = start_supervisord(names, redis_server.url)
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


def test_works_without_supervisor_rpc(
    redis_server: RedisServer, collector: Collector, start_supervisord: Supervisords
) -> None:
    names = velociraptor_names(5)
    sup = start_supervisord(names, redis_server.url, rpc=None)
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


def test_listener_killed_mid_burst_converges(redis_server: RedisServer, start_supervisord: Supervisords) -> None:
    """A crash loses what the dead listener had queued; the next run's resync restores it."""
    sup = start_supervisord(velociraptor_names(100), redis_server.url, program=ProgramSpec(group="fleet"))
    client = settled(sup, redis_server)
    old = sup.listener_pid()
    burst = sup.ctl_in_background("restart", "fleet:*")
    time.sleep(0.3)  # a moment into the burst, not a wait for anything
    os.kill(old, signal.SIGKILL)
    assert burst.wait(120) == 0
    wait_for(sup.programs_running, 60, "programs to run")
    new = wait_for(lambda: sup.listener_pid() != old and sup.listener_pid(), 10, "supervisord to restart it")
    assert new != old
    wait_for(lambda: not snapshot_differences(client, sup.hostname, sup), 3, "snapshot after the crash")
    assert sup.listener_info()["statename"] == "RUNNING"
