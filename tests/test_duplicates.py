"""Duplicate hosts are decided on the supervisord each listener runs under, not on pids.

A container fleet runs the same programs with the same pids on every host (one pid
namespace per container); the real bug is one supervisord publishing under two names.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from harness import (
    BIN,
    ListenerSpec,
    RedisServer,
    Supervisord,
    Supervisords,
    snapshot_differences,
    stored_snapshot,
    velociraptor_names,
    wait_for,
)
from raptor.consumer.fleet import SAME_PIDS, SAME_SUPERVISORD, Duplicate, Fleet, Host
from raptor.keys import META_SUPERVISORD_ID, meta_key, snapshot_key
from raptor.publisher import identity

PROGRAMS = velociraptor_names(20)


# -- the identity -----------------------------------------------------------------


def test_start_ticks_is_field_22_even_with_parentheses_in_the_name() -> None:
    stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 1 0 0 0 3 1 0 0 20 0 1 0 98765 1000 200"
    assert identity.start_ticks(stat) == "98765"
    assert identity.start_ticks("42 (truncated) S 1") is None
    assert identity.namespace_inode("pid:[4026531836]") == "4026531836"
    assert identity.namespace_inode("garbage") is None


def test_supervisord_id_without_proc_is_none() -> None:
    def missing(path: str) -> str:
        raise FileNotFoundError(path)

    assert identity.supervisord_id(7, read=missing, readlink=missing) is None


def test_supervisord_id_joins_boot_namespace_pid_and_start_time() -> None:
    files = {identity.BOOT_ID: "b00t\n", "/proc/7/stat": "7 (supervisord) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555"}

    def read(path: str) -> str:
        if path not in files:
            raise PermissionError(path)
        return files[path]

    assert identity.supervisord_id(7, read=read, readlink=lambda _: "pid:[4026532001]") == "b00t:4026532001:7:555"
    # hidepid= hides a parent of another user: still unique per machine and namespace
    assert identity.supervisord_id(8, read=read, readlink=lambda _: "pid:[4026532001]") == "b00t:4026532001:8:"


def test_host_identity_here_is_read_once_per_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    identity._cached.clear()
    ppid = os.getppid()
    found = identity.host_identity()[identity.FIELD]
    boot_id = Path(identity.BOOT_ID).read_text().strip()
    pid_ns = identity.namespace_inode(os.readlink("/proc/self/ns/pid"))
    ticks = identity.start_ticks(Path(f"/proc/{ppid}/stat").read_text())
    assert found == f"{boot_id}:{pid_ns}:{ppid}:{ticks}"
    calls: List[int] = []
    monkeypatch.setattr(identity, "supervisord_id", lambda pid: calls.append(pid) or "x")
    assert identity.host_identity()[identity.FIELD] == found  # cached: meta() runs on every batch
    assert calls == []
    monkeypatch.setattr(identity.os, "getppid", lambda: 1)  # re-parented: supervisord died
    assert identity.host_identity() == {identity.FIELD: "x"}
    assert calls == [1]
    identity._cached.clear()


# -- Fleet.find_duplicates on synthetic snapshots ------------------------------------


def snapshot(pids: Dict[str, int]) -> Dict[str, str]:
    return {n: json.dumps({"name": n, "group": n, "statename": "RUNNING", "pid": p}) for n, p in pids.items()}


def container_pids(programs: List[str] = PROGRAMS) -> Dict[str, int]:
    """What every container of a fleet reports: supervisord is pid 1, its children 2, 3..."""
    return {name: 2 + i for i, name in enumerate(programs)}


def add_host(fleet: Fleet, name: str, pids: Dict[str, int], supervisord_id: Optional[str]) -> Host:
    meta = {"run_id": f"run-{name}", "seq": "1", "refreshed": str(time.time())}
    if supervisord_id is not None:
        meta["supervisord_id"] = supervisord_id
    host = fleet.hosts[name] = Fleet._host(name, snapshot(pids), meta, 600, time.time())
    return host


def container_fleet(count: int) -> Fleet:
    fleet = Fleet()
    for i in range(count):
        add_host(fleet, f"c{i:04d}", container_pids(), f"b00t:{4026532000 + i}:1:{300 + i}")
    return fleet


def test_a_container_fleet_has_no_duplicates() -> None:
    fleet = container_fleet(400)
    assert fleet.find_duplicates() == []  # was 79,800 pairs: same names, same pids everywhere


def test_duplicates_of_1000_hosts_are_found_in_one_pass() -> None:
    fleet = container_fleet(1000)
    add_host(fleet, "c0007.old-name", {"x": 99}, fleet.hosts["c0007"].supervisord_id)
    started = time.perf_counter()
    found = fleet.find_duplicates()
    elapsed = time.perf_counter() - started
    assert [(d.a, d.b, d.basis) for d in found] == [("c0007", "c0007.old-name", SAME_SUPERVISORD)]
    assert elapsed < 0.5, f"find_duplicates took {elapsed:.2f} s for 1,000 hosts"


def test_one_supervisord_under_two_names_is_a_duplicate_whatever_its_pids() -> None:
    fleet = Fleet()
    add_host(fleet, "web1", container_pids(), "b00t:1:10:100")
    add_host(fleet, "web1.example.com", {"other": 5}, "b00t:1:10:100")  # a renamed host's old snapshot
    add_host(fleet, "web2", container_pids(), "b00t:2:10:100")
    assert fleet.find_duplicates() == [Duplicate("web1", "web1.example.com", SAME_SUPERVISORD, "b00t:1:10:100")]
    assert fleet.duplicates() == [("web1", "web1.example.com")]


def test_hosts_without_an_identity_fall_back_to_shared_pids() -> None:
    fleet = Fleet()
    add_host(fleet, "new1", container_pids(), "b00t:1:1:1")
    add_host(fleet, "new2", container_pids(), "b00t:2:1:1")
    add_host(fleet, "old1", container_pids(), None)  # a listener that publishes no supervisord_id
    add_host(fleet, "old2", container_pids(), None)
    add_host(fleet, "old3", {"elsewhere": 7, **dict.fromkeys(PROGRAMS[:3], 1000)}, None)
    found = {(d.a, d.b): d for d in fleet.find_duplicates()}
    # new1/new2: both identified, different supervisords: never a duplicate, however alike.
    # An identified host is never paired by pids with an old one: in a staged upgrade of
    # a container fleet every old container would pair with every upgraded one.
    assert set(found) == {("old1", "old2")}
    assert {d.basis for d in found.values()} == {SAME_PIDS}
    assert found[("old1", "old2")].detail == "20 of 20 pids"


def test_hosts_only_seen_in_messages_wait_for_their_snapshot() -> None:
    fleet = container_fleet(3)
    fleet.apply({"event": "PROCESS_STATE_RUNNING", "host": "c9999", "name": PROGRAMS[0], "pid": 2, "seq": 1,
                 "run_id": "r", "statename": "RUNNING"})  # fmt: skip
    assert fleet.find_duplicates() == []  # its supervisord_id is in host_meta, read at the next load


# -- raptor status against a real Redis ------------------------------------------------


def raptor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "raptor"), *args], capture_output=True, text=True, timeout=60, check=False)


def write_host(client: Any, name: str, pids: Dict[str, int], supervisord_id: Optional[str]) -> None:
    meta = {"run_id": f"run-{name}", "seq": 1, "refreshed": time.time()}
    if supervisord_id:
        meta["supervisord_id"] = supervisord_id
    client.hset(snapshot_key(name), mapping=snapshot(pids))
    client.hset(meta_key(name), mapping=meta)


@pytest.mark.integration
def test_status_of_1000_containers_exits_0_and_names_a_renamed_one(redis_server: RedisServer) -> None:
    client = redis_server.client()
    pipe = client.pipeline(transaction=False)
    for i in range(1000):
        write_host(pipe, f"c{i:04d}", container_pids(), f"b00t:{4026532000 + i}:1:300")
    pipe.execute()
    started = time.monotonic()
    result = raptor("status", "--json", "--redis-url", redis_server.url)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    report = json.loads(result.stdout)
    assert len(report["hosts"]) == 1000
    assert report["duplicates"] == [] and report["duplicate_basis"] == []
    assert report["hosts"][0]["supervisord_id"] == "b00t:4026532000:1:300"
    assert elapsed < 15, f"raptor status took {elapsed:.1f} s for 1,000 hosts"
    # the host c0001 renamed to web1: its old name's snapshot still lives
    write_host(client, "web1", container_pids(), "b00t:4026532001:1:300")
    text = raptor("status", "--redis-url", redis_server.url)
    assert text.returncode == 1
    duplicates = [line for line in text.stdout.splitlines() if line.startswith("DUPLICATE")]
    assert duplicates == [
        "DUPLICATE: c0001 and web1 are one supervisord publishing under two names "
        "(same supervisord_id b00t:4026532001:1:300)"
    ]
    report = json.loads(raptor("status", "--json", "--redis-url", redis_server.url).stdout)
    assert report["duplicate_basis"] == [
        {"hosts": ["c0001", "web1"], "basis": "supervisord_id", "detail": "b00t:4026532001:1:300"}
    ]


# -- real supervisords -------------------------------------------------------------------


class NamespacedSupervisord(Supervisord):
    """supervisord as pid 1 of a pid namespace of its own: a container, as far as pids go."""

    def command(self) -> List[str]:
        return ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *super().command()]

    def stop(self) -> None:
        if self.process is None:
            return
        self.ctl("shutdown", timeout=30)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()  # --kill-child: supervisord and its namespace go with it
            self.process.wait(10)
        self.process = None


def published_identity(client: Any, host: str) -> str:
    value = client.hget(meta_key(host), META_SUPERVISORD_ID)
    assert value, f"host_meta:{host} has no supervisord_id: the listener must publish it (Linux always has /proc)"
    return str(value.decode())


needs_namespaces = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="pid namespaces need root and unshare(1)"
)


@pytest.mark.integration
@needs_namespaces
def test_two_containers_with_the_same_programs_and_pids_are_not_duplicates(
    tmp_path: Path, redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    client = redis_server.client()
    containers = [
        start_supervisord(
            velociraptor_names(6),
            redis_server.url,
            hostname=name,
            directory=tmp_path / name,
            kind=NamespacedSupervisord,
        )
        for name in ("c1.containers.test", "c2.containers.test")
    ]
    for sup in containers:
        wait_for(sup.programs_running, 30, f"programs of {sup.hostname} to run")
        wait_for(lambda s=sup: not snapshot_differences(client, s.hostname, s), 10, f"snapshot of {sup.hostname}")
    ids = [published_identity(client, sup.hostname) for sup in containers]
    pids = [
        {n: p["pid"] for n, p in stored_snapshot(client, sup.hostname).items() if n != "proc_publisher"}
        for sup in containers
    ]
    assert pids[0] == pids[1], "not a container fleet: the programs' pids differ"
    assert ids[0] != ids[1]
    result = raptor("status", "--json", "--redis-url", redis_server.url)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    report = json.loads(result.stdout)
    assert report["duplicates"] == []
    assert sorted(h["supervisord_id"] for h in report["hosts"]) == sorted(ids)


@pytest.mark.integration
def test_a_renamed_host_is_a_duplicate_while_its_old_snapshot_lives(
    redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    client = redis_server.client()
    sup = start_supervisord(velociraptor_names(4), redis_server.url, hostname="web1")
    wait_for(sup.programs_running, 30, "programs to run")
    wait_for(lambda: not snapshot_differences(client, "web1", sup), 10, "snapshot of web1")
    old_id = published_identity(client, "web1")
    sup.listener = ListenerSpec(hosts={"proc_publisher": "web1.example.com"})  # the role's hostname changed
    sup.write_config()
    assert sup.ctl("reread").returncode == 0
    assert sup.ctl("update", "proc_publisher").returncode == 0
    wait_for(lambda: not snapshot_differences(client, "web1.example.com", sup), 10, "snapshot of the new name")
    assert published_identity(client, "web1.example.com") == old_id
    result = raptor("status", "--json", "--redis-url", redis_server.url)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr
    report = json.loads(result.stdout)
    assert report["duplicate_basis"] == [
        {"hosts": ["web1", "web1.example.com"], "basis": "supervisord_id", "detail": old_id}
    ]
