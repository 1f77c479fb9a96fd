"""Issue 10 #6: the listener under Redis ACL users, each lacking one permission of the
minimal ACL. One clear line naming what is missing, a calm retry, never a loop.

All the users run at once, one listener each in a single supervisord (the listener's
HOSTNAME is its ACL user's name), so the whole matrix costs one scenario's time.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List

import pytest
import redis

from harness import (
    BIN,
    Collector,
    ListenerSpec,
    RedisServer,
    Supervisord,
    latest_message_differences,
    snapshot_differences,
    wait_for,
)

from .test_sink_faults import ACL_PASSWORD, MINIMAL_ACL, acl_user, republished

pytestmark = pytest.mark.integration

PROGRAMS = ["web-v1-prod-abc123-web-5000", "web-v1-prod-abc123-web-5001", "web-v1-prod-abc123-worker-5002"]
REMOVED = PROGRAMS[-1]  # removed at the end: the only use of HDEL
# Long enough for a looping listener to give itself away many times over, short
# enough for the test (a permission refused is retried every 30 s).
WATCH = 8.0
# Redis refuses these at MULTI time (or at connection): nothing may reach the channel.
PUBLISH_NOTHING = {
    "~host_procs:*",
    "~host_meta:*",
    "~host_history:*",
    "~proc_history",
    "&proc_events",
    "+xadd",
    "+publish",
    "+hset",
    "+expire",
    "+exec",
    "+client|setname",
    "+select",
}
REFUSAL = re.compile(r"lacks the ACL permission (\S+)")


def user_of(permission: str) -> str:
    """A readable ACL user (and HOSTNAME) for the user lacking *permission*."""
    if permission == "full":
        return "acl-full"
    return "acl-no-" + re.sub(r"[^a-z]+", "-", permission.lower()).strip("-")


def named_in_log(permission: str, host: str) -> str:
    """The permission as the listener names it: key patterns as the key it was refused."""
    if permission.startswith("~"):
        return f"~{permission[1:].replace('*', host)}"
    return permission


CASES = ["full", *(rule for rule in MINIMAL_ACL.split() if rule != "resetchannels"), "+select"]


@dataclass
class Scenario:
    sup: Supervisord
    collector: Collector
    admin: redis.Redis
    pids: Dict[str, int]
    messages: List[Dict[str, Any]]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    directory = tmp_path_factory.mktemp("acl")
    with RedisServer(directory / "redis") as redis_server:
        admin = redis_server.client()
        for case in CASES:
            # db 1 needs +select, which the minimal ACL (for db 0) lacks: the select case has all the rest.
            acl_user(admin, user_of(case), without=[case])
        # Each listener connects as the user named by its HOSTNAME; the select case uses db 1.
        wrapper = directory / "listener.sh"
        wrapper.write_text(
            "#!/bin/sh\n"
            'db=0; case "$HOSTNAME" in *select*) db=1 ;; esac\n'
            f'REDIS_URL="redis://$HOSTNAME:{ACL_PASSWORD}@127.0.0.1:{redis_server.port}/$db"; export REDIS_URL\n'
            f"exec {BIN / 'proc_publisher'}\n",
            encoding="utf-8",
        )
        wrapper.chmod(0o755)
        listeners = {user_of(case): user_of(case) for case in CASES}
        listener = ListenerSpec(command=str(wrapper), hosts=listeners)
        sup = Supervisord(directory / "sup", PROGRAMS, redis_server.url, listener=listener)
        with Collector(redis_server.port) as collector, sup:
            wait_for(sup.programs_running, 60, "programs to run")
            pids = {name: int(sup.listener_info(name)["pid"]) for name in listeners}
            full = user_of("full")
            wait_for(lambda: not snapshot_differences(admin, full, sup), 10, "the full ACL user's snapshot")
            restart = sup.ctl("restart", *PROGRAMS)
            assert restart.returncode == 0, restart.stderr
            assert sup.ctl("stop", REMOVED).returncode == 0
            assert "removed process group" in sup.ctl("remove", REMOVED).stdout
            sup.programs = PROGRAMS[:-1]
            # An observation window, not a wait for a condition: a looping listener
            # publishes and logs again and again in it; each case then counts.
            time.sleep(WATCH)
            yield Scenario(sup, collector, admin, pids, collector.snapshot())


def of_host(collector: Collector, host: str) -> List[Dict[str, Any]]:
    return [m for m in collector.snapshot() if m.get("host") == host]


def message_bounds(processes: int) -> Dict[str, int]:
    """Transitions (each at most once): 2 per process at start (the listeners are
    processes too), 4 per program restarted, 3 for the one stopped and removed.
    Corrections: every process at the start resync, and a few more."""
    return {"transitions": 2 * processes + 4 * len(PROGRAMS) + 3, "corrections": 2 * processes}


@pytest.mark.parametrize("permission", CASES)
def test_one_clear_line_and_no_loop(scenario: Scenario, permission: str) -> None:
    host = user_of(permission)
    sup = scenario.sup
    log = sup.listener_log(host)
    info = sup.listener_info(host)
    assert info["statename"] == "RUNNING", info
    assert int(info["pid"]) == scenario.pids[host], "the listener restarted"
    assert "Traceback" not in log
    assert "unavailable" not in log, log

    messages = [m for m in scenario.messages if m.get("host") == host]
    bounds = message_bounds(len(scenario.pids) + len(PROGRAMS))
    assert not republished(messages), republished(messages)
    assert len([m for m in messages if not m["resync"]]) <= bounds["transitions"]
    assert len([m for m in messages if m["resync"]]) <= bounds["corrections"]

    refusals = [line for line in log.splitlines() if REFUSAL.search(line)]
    if permission in ("full", "+ping"):
        # +ping is only used by redis-py's health check of a connection idle for 30 s,
        # which the listener's 1 s heartbeat never lets happen.
        assert refusals == [], refusals
        assert not snapshot_differences(scenario.admin, host, sup)
        assert not latest_message_differences(_Host(scenario.collector, host), sup)
        return
    assert len(refusals) == 1, log
    named = REFUSAL.search(refusals[0])
    assert named is not None
    assert named.group(1) == named_in_log(permission, host), refusals[0]
    assert f"ACL SETUSER {host} {named.group(1)}" in refusals[0]
    if permission in PUBLISH_NOTHING:
        assert messages == []
    if permission in ("+del", "+hgetall", "+exists", "+hdel", "+xtrim"):
        # Only the repairs (and the resync's trimming of old history) need these: events are still published, each once.
        for name in PROGRAMS:
            events = [m["event"] for m in messages if m["name"] == name and not m["resync"]]
            assert in_order(RESTART, events), (name, events)
        removed = [m for m in messages if m["event"] == "PROCESS_GROUP_REMOVED"]
        # Without +hdel, the batch that removes a program from the snapshot is refused whole.
        assert len(removed) == (0 if permission == "+hdel" else 1), removed


RESTART = ["PROCESS_STATE_STOPPING", "PROCESS_STATE_STOPPED", "PROCESS_STATE_STARTING", "PROCESS_STATE_RUNNING"]


def in_order(wanted: List[str], events: List[str]) -> bool:
    """*wanted* appears in *events* in this order (not necessarily one after the other)."""
    remaining = iter(events)
    return all(any(event == step for event in remaining) for step in wanted)


class _Host:
    """The collector's messages of one host (for latest_message_differences)."""

    def __init__(self, collector: Collector, host: str) -> None:
        self._collector = collector
        self._host = host

    def latest_by_name(self) -> Dict[str, Dict[str, Any]]:
        return {m["name"]: m for m in of_host(self._collector, self._host)}
