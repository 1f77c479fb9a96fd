"""The sink under the faults of issue 10: each transition is published once and keeps
its seq, keys of the wrong type are repaired, an idle listener notices a lost snapshot."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any, Callable, Dict, Iterable, List, Set, Tuple

import pytest
import redis

from harness import (
    Collector,
    ListenerSpec,
    RedisServer,
    Supervisord,
    Supervisords,
    snapshot_differences,
    velociraptor_names,
    wait_for,
)
from raptor.keys import META_REFRESHED, META_UPDATED, meta_key, snapshot_key

pytestmark = pytest.mark.integration

MINIMAL_ACL = (
    "~host_procs:* ~host_meta:* ~host_history:* ~proc_history resetchannels &proc_events +publish +hset +hdel +del "
    "+expire +multi +exec +exists +hgetall +xadd +xtrim +ping +client|setname"
)
ACL_PASSWORD = "acl-pw"


def acl_user(admin: redis.Redis, name: str, without: Iterable[str] = (), extra: Iterable[str] = ()) -> None:
    """An ACL user with the listener's minimal permissions, less *without*."""
    left_out = set(without)
    rules = [rule for rule in MINIMAL_ACL.split() if rule not in left_out]
    admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{ACL_PASSWORD}", *rules, *extra)


def republished(messages: Iterable[Dict[str, Any]]) -> List[str]:
    """What breaks "each transition once, with one seq": a (run_id, seq) carrying two
    different messages, or one transition (not a resync correction) under two seqs."""
    content: Dict[Tuple[str, int], Dict[str, Any]] = {}
    seqs: Dict[str, Set[int]] = defaultdict(set)
    problems = []
    for message in messages:
        body = {k: v for k, v in message.items() if k != "_received"}
        key = (message["run_id"], message["seq"])
        if content.setdefault(key, body) != body:
            problems.append(f"seq {key} carried {content[key]['name']} then {body['name']} ({body['event']})")
        if not message["resync"]:
            # Two transitions of a process differ in some field (times, pid, from_state).
            seqs[json.dumps({k: v for k, v in body.items() if k != "seq"}, sort_keys=True)].add(message["seq"])
    for transition, numbers in seqs.items():
        if len(numbers) > 1:
            t = json.loads(transition)
            problems.append(f"{t['name']} {t.get('from_state')}>{t['event']} published under seqs {sorted(numbers)}")
    return problems


def holds_for(problems: Callable[[], Any], seconds: float, what: str, interval: float = 0.1) -> None:
    """Fail as soon as *problems* returns something within *seconds* (proves that nothing happens)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = problems()
        assert not found, f"{what}: {found}"
        time.sleep(interval)


def settled_idle(sup: Supervisord, redis_server: RedisServer) -> redis.Redis:
    wait_for(sup.programs_running, 60, "programs to run")
    client = redis_server.client()
    wait_for(lambda: not snapshot_differences(client, sup.hostname, sup), 10, "the snapshot after start")
    # Idle: the last write was the resync that follows a burst (a batch sets only "updated").
    meta = meta_key(sup.hostname)
    wait_for(lambda: client.hget(meta, META_REFRESHED) == client.hget(meta, META_UPDATED), 10, "the settle resync")
    return client


def of_host(collector: Collector, host: str, since: int = 0) -> List[Dict[str, Any]]:
    return [m for m in collector.snapshot()[since:] if m.get("host") == host]


def test_a_refused_resync_does_not_publish_the_batch_again(
    redis_server: RedisServer, collector: Collector, start_supervisord: Supervisords
) -> None:
    """Issue 10 #3: the resync of the pass that published a batch fails (here Redis refuses
    its HGETALL): the batch is not published again, under new seqs or at all."""
    acl_user(redis_server.client(), "nohgetall", without=["+hgetall"])
    url = f"redis://nohgetall:{ACL_PASSWORD}@127.0.0.1:{redis_server.port}/0"
    names = velociraptor_names(3)
    sup = start_supervisord(names, url)
    wait_for(sup.programs_running, 60, "programs to run")
    restart = sup.ctl("restart", *names)
    assert restart.returncode == 0, restart.stderr
    wait_for(
        lambda: len([m for m in collector.snapshot() if m["event"] == "PROCESS_STATE_STOPPING"]) >= 3,
        10,
        "the restart's transitions",
    )
    # A sink that re-publishes its batch does it at every pass (about once a second).
    holds_for(lambda: republished(collector.snapshot()), 4, "each transition published once")
    assert not republished(collector.snapshot()), republished(collector.snapshot())
    assert sup.listener_info()["statename"] == "RUNNING"


@pytest.mark.parametrize("record", ["host_procs", "host_meta"])
def test_a_record_of_the_wrong_type_is_repaired(
    redis_server: RedisServer, collector: Collector, start_supervisord: Supervisords, record: str
) -> None:
    """Issue 10 #4: a string where the listener keeps a hash. The batch that meets it is
    published once; the listener deletes the key, rewrites it and says so once."""
    names = velociraptor_names(4)
    sup = start_supervisord(names, redis_server.url)
    client = settled_idle(sup, redis_server)
    key = {"host_procs": snapshot_key, "host_meta": meta_key}[record](sup.hostname)
    client.delete(key)
    client.set(key, "written by another tool")
    before = len(collector.snapshot())
    restart = sup.ctl("restart", *names)
    assert restart.returncode == 0, restart.stderr
    wait_for(
        lambda: client.type(key) == b"hash" and not snapshot_differences(client, sup.hostname, sup),
        2.0,
        f"{key} to be a hash matching supervisord again",
    )
    # 4 transitions per program, each once; a resync corrects at most every program
    # (the repair's) plus the settle resync's few details.
    bound = 4 * len(names) + 2 * len(names)
    holds_for(
        lambda: len(of_host(collector, sup.hostname, before)) > bound and of_host(collector, sup.hostname, before),
        3,
        f"at most {bound} messages",
    )
    assert not republished(collector.snapshot()), republished(collector.snapshot())
    assert sup.listener_log().count("WRONGTYPE") == 1, sup.listener_log()
    assert sup.listener_info()["statename"] == "RUNNING"


def test_an_idle_listener_notices_a_lost_snapshot_within_2s(
    redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    """Issue 10 #5: only host_procs disappears (DEL, eviction, expiry), nothing happens on the host."""
    sup = start_supervisord(velociraptor_names(3), redis_server.url)
    client = settled_idle(sup, redis_server)
    client.delete(snapshot_key(sup.hostname))
    wait_for(lambda: not snapshot_differences(client, sup.hostname, sup), 2.0, "the snapshot to be rebuilt")


def test_a_host_without_programs_is_not_resynced_every_second(
    redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    """A host without processes has no snapshot hash: the heartbeat must not take that for a loss."""
    sup = start_supervisord([], redis_server.url, listener=ListenerSpec(env={"RAPTOR_LOG_LEVEL": "DEBUG"}))
    client = redis_server.client()
    wait_for(lambda: client.exists(meta_key(sup.hostname)), 10, "the meta record")
    missing = "records are missing"
    holds_for(lambda: sup.listener_log().count(missing), 3.5, "no resync for a missing snapshot")
    assert "resync (listener start)" in sup.listener_log()
