"""The fleet as raptor publishes it, read back from Redis.

A :class:`Fleet` starts from the per-host snapshots (``host_procs:<host>`` and
``host_meta:<host>``) and is kept current by the messages on the channel. Each
host's ``(run_id, seq)`` tells whether a message is new, a duplicate, or follows a
gap or a listener restart, in which case that host is reloaded from its snapshot.

Duplicates (one supervisord publishing under two names) are decided on the
``supervisord_id`` each listener publishes in its meta record (see
:mod:`raptor.identity`); only for a host without one (an older listener, another
publisher) are they guessed from shared process names and pids.
"""

from __future__ import annotations

import enum
import fnmatch
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Set, Tuple, TypedDict, cast

import redis

from .. import keys
from ..keys import DEFAULT_SNAPSHOT_TTL
from ..messages import identity
from .seq import Seen, SeqTracker
from .text import as_text

TICK_PERIOD = 60.0
STALE_AFTER = 2 * TICK_PERIOD


class Proc(TypedDict, total=False):
    """One process as the fleet view keeps it: the last ``PROCESS_STATE_*`` message of
    it (:mod:`raptor.messages`, every field), or, until one arrives, the record made
    from its snapshot entry by :func:`proc_from_snapshot` (identity, group, statename,
    state, pid, description, start). Not total: the two differ, and messages from other
    publishers may lack fields. Extra fields of a message are kept as they are."""

    event: str
    host: str
    id: str
    name: str
    app_name: str
    version: str
    config_name: str
    hash: str
    proc_name: str
    port: int
    group: str
    jsname: str
    statename: str
    state: Optional[int]
    pid: int
    exitstatus: int
    description: str
    spawnerr: str
    now: Optional[str]
    start_time: Optional[str]
    stop_time: Optional[str]
    start: int  # epoch, from a snapshot entry (messages carry start_time instead)
    logfile: str
    stdout_logfile: str
    stderr_logfile: str
    from_state: Optional[str]
    seq: int
    run_id: str
    resync: bool


@dataclass
class Host:
    name: str
    procs: Dict[str, Proc] = field(default_factory=dict)
    tracker: SeqTracker = field(default_factory=SeqTracker)  # the listener's (run_id, seq)
    refreshed: Optional[float] = None  # epoch of the last full snapshot refresh
    supervisord_id: Optional[str] = None  # from host_meta; see raptor.identity
    loaded: bool = False  # read from Redis (not only seen in messages)
    listener: Dict[str, Any] = field(default_factory=dict)  # the listener's health, from host_meta

    @property
    def run_id(self) -> Optional[str]:
        return self.tracker.run_id

    @property
    def seq(self) -> int:
        return self.tracker.seq

    def age(self, now: float) -> Optional[float]:
        return None if self.refreshed is None else max(0.0, now - self.refreshed)

    def stale(self, now: float) -> bool:
        age = self.age(now)
        return age is None or age > STALE_AFTER

    def counts(self) -> Dict[str, int]:
        return dict(Counter(p.get("statename", "UNKNOWN") for p in self.procs.values()))


def state_order(state: str) -> Tuple[bool, str]:
    """Sort key for state names: RUNNING first, then alphabetical."""
    return (state != "RUNNING", state)


class Apply(str, enum.Enum):
    """What :meth:`Fleet.apply` did with a message. (A str too: the values compare
    equal to the plain strings this was before.)"""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # seq already seen (at-least-once delivery)
    RESYNC = "resync"  # gap or new listener run: the host must be reloaded
    IGNORED = "ignored"  # not a proc message


class Duplicate(NamedTuple):
    """Two host names published by one supervisord, and how that was decided."""

    a: str
    b: str
    basis: str  # SAME_SUPERVISORD or SAME_PIDS
    detail: str  # the shared supervisord_id, or "N of M pids"


SAME_SUPERVISORD = "supervisord_id"
SAME_PIDS = "pids"  # the guess for hosts that publish no supervisord_id


def _float(value: Optional[str]) -> Optional[float]:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# What a host's listener says of itself (host_meta), as status --json and raptor web show it.
_HEALTH_NUMBERS = (
    keys.META_EVENTS,
    keys.META_DISCARDED,
    keys.META_COALESCED,
    keys.META_ACKS,
    keys.META_ACK_P50_MS,
    keys.META_ACK_P99_MS,
    keys.META_ACK_MAX_MS,
    keys.META_STARTED,
    keys.META_UPDATED,
    keys.META_PROCESSES,
    keys.META_PID,
)


def listener_health(meta: Dict[str, str]) -> Dict[str, Any]:
    """The listener's counters and ack latencies from its meta record (numbers where
    they parse, absent where the publisher wrote none), and its version."""
    health: Dict[str, Any] = {}
    for name in _HEALTH_NUMBERS:
        value = _float(meta.get(name))
        if value is not None and math.isfinite(value):
            health[name] = int(value) if value.is_integer() and "_ms" not in name else value
    if meta.get(keys.META_VERSION):
        health[keys.META_VERSION] = meta[keys.META_VERSION]
    return health


def proc_from_snapshot(host: str, raw: Dict[str, Any]) -> Proc:
    """A proc record (message-like) from a raw ``getAllProcessInfo()`` entry."""
    name = str(raw.get("name", ""))
    proc = cast(Proc, identity(host, name))
    proc.update(
        {
            "group": raw.get("group", name),
            "statename": raw.get("statename", "UNKNOWN"),
            "state": raw.get("state"),
            "pid": int(raw.get("pid") or 0),
            "description": raw.get("description", ""),
            "start": raw.get("start", 0),
        }
    )
    return proc


class Fleet:
    def __init__(self) -> None:
        self.hosts: Dict[str, Host] = {}

    # -- loading -----------------------------------------------------------------

    @staticmethod
    def host_names(client: redis.Redis) -> List[str]:
        names = set()
        for prefix in (keys.SNAPSHOT_PREFIX, keys.META_PREFIX):
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                names.add(keys.host_of(as_text(key)))
        return sorted(names)

    def load(self, client: redis.Redis, hosts: Optional[Iterable[str]] = None) -> None:
        """(Re)load the given hosts, or all of them, from their snapshots in one round trip."""
        names = list(hosts) if hosts is not None else self.host_names(client)
        if hosts is None:
            self.hosts = {}
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.snapshot_key(name))
            pipe.hgetall(keys.meta_key(name))
            pipe.ttl(keys.snapshot_key(name))
        results = pipe.execute()
        now = time.time()
        for index, name in enumerate(names):
            snapshot, meta_raw, ttl = results[3 * index : 3 * index + 3]
            self.hosts[name] = self._host(name, snapshot, meta_raw, ttl, now)

    @staticmethod
    def _host(name: str, snapshot: Dict[Any, Any], meta_raw: Dict[Any, Any], ttl: int, now: float) -> Host:
        host = Host(name, loaded=True)
        for field_name, value in snapshot.items():
            try:
                raw = json.loads(value)
            except ValueError:
                continue
            if isinstance(raw, dict):
                proc = proc_from_snapshot(name, raw)
                host.procs[as_text(field_name)] = proc
        meta = {as_text(k): as_text(v) for k, v in meta_raw.items()}
        seq = int(meta[keys.META_SEQ]) if meta.get(keys.META_SEQ, "").isdigit() else 0
        host.tracker = SeqTracker(meta.get(keys.META_RUN_ID), seq)
        host.refreshed = _float(meta.get(keys.META_REFRESHED))
        host.supervisord_id = meta.get(keys.META_SUPERVISORD_ID) or None
        host.listener = listener_health(meta)
        if host.refreshed is None and ttl and ttl > 0:
            # A publisher without a meta record (Velociraptor's own): estimate from the TTL.
            host.refreshed = now - (DEFAULT_SNAPSHOT_TTL - ttl)
        return host

    # -- live updates -------------------------------------------------------------

    def apply(self, message: Dict[str, Any]) -> Apply:
        """Apply one message; say whether it was applied, a duplicate, or needs a resync."""
        host_name = message.get("host")
        name = message.get("name")
        event = message.get("event", "")
        if not isinstance(host_name, str) or not isinstance(name, str) or not isinstance(event, str):
            return Apply.IGNORED
        host = self.hosts.get(host_name)
        if host is None:
            host = self.hosts[host_name] = Host(host_name)
        verdict = host.tracker.observe(message.get("run_id"), message.get("seq"))
        if verdict.seen is Seen.DUPLICATE:
            return Apply.DUPLICATE
        if event == "PROCESS_GROUP_REMOVED":
            host.procs.pop(name, None)
        elif event.startswith("PROCESS_STATE_"):
            host.procs[name] = cast(Proc, message)  # a state message is a full proc record
        else:
            return Apply.IGNORED
        return Apply.RESYNC if verdict.resync else Apply.APPLIED

    # -- questions ----------------------------------------------------------------

    def select(self, host_glob: Optional[str] = None, app: Optional[str] = None) -> List[Host]:
        hosts = [h for n, h in sorted(self.hosts.items()) if host_glob is None or fnmatch.fnmatchcase(n, host_glob)]
        if app is None:
            return hosts
        selected = []
        for host in hosts:
            procs = {n: p for n, p in host.procs.items() if p.get("app_name") == app}
            if procs:
                selected.append(replace(host, procs=procs))
        return selected

    def duplicates(self) -> List[Tuple[str, str]]:
        """Pairs of host names that are one supervisord publishing under two names."""
        return [(d.a, d.b) for d in self.find_duplicates()]

    def find_duplicates(self) -> List[Duplicate]:
        """Pairs of host names that are one supervisord (the hostname mismatch that
        makes the dashboard show every proc twice), with the basis of each verdict.

        Two hosts that both publish a ``supervisord_id`` are duplicates if and only if
        the ids are equal: grouped by id, so a fleet of any size costs one pass.
        Where both have none (older listeners), the old guess applies: the same
        processes with the same pids. A host with an id is never paired by pids with
        one without: during a staged upgrade of a container fleet, every container
        not yet upgraded would otherwise pair with every upgraded one (same programs,
        same pids). Hosts only seen in messages, not yet loaded, are left out.
        """
        found: Dict[Tuple[str, str], Duplicate] = {}
        by_id: Dict[str, List[str]] = {}
        for name, host in self.hosts.items():
            if host.supervisord_id:
                by_id.setdefault(host.supervisord_id, []).append(name)
        for supervisord_id, names in by_id.items():
            for pair in _pairs(sorted(names)):
                found[pair] = Duplicate(*pair, SAME_SUPERVISORD, supervisord_id)
        legacy = {n for n, h in self.hosts.items() if h.loaded and not h.supervisord_id}
        if legacy:
            for duplicate in self._same_pids(legacy):
                found.setdefault((duplicate.a, duplicate.b), duplicate)
        return [found[pair] for pair in sorted(found)]

    def _same_pids(self, legacy: Set[str]) -> List[Duplicate]:
        """Pairs of hosts of *legacy* that share half their running pids."""
        signatures: Dict[str, Set[Tuple[str, int]]] = {}
        for name in legacy:
            host = self.hosts[name]
            running = {(p["name"], int(p.get("pid") or 0)) for p in host.procs.values() if p.get("pid")}
            if running:
                signatures[name] = running
        owners: Dict[Tuple[str, int], List[str]] = {}
        for name, signature in signatures.items():
            for item in signature:
                owners.setdefault(item, []).append(name)
        shared: Counter[Tuple[str, str]] = Counter()
        for names in owners.values():
            for pair in _pairs(sorted(names)):
                shared[pair] += 1
        pairs = []
        for (a, b), count in shared.items():
            least = min(len(signatures[a]), len(signatures[b]))
            # Pids are reused, so one coincidence proves nothing; half the processes does.
            if count >= max(1, least // 2):
                pairs.append(Duplicate(a, b, SAME_PIDS, f"{count} of {least} pids"))
        return pairs

    @staticmethod
    def as_json(hosts: List[Host], duplicates: List[Duplicate], now: float) -> Dict[str, Any]:
        def host_json(host: Host) -> Dict[str, Any]:
            age = host.age(now)
            return {
                "host": host.name,
                "procs": [host.procs[n] for n in sorted(host.procs)],
                "counts": host.counts(),
                "stale": host.stale(now),
                "refreshed": host.refreshed,
                "age_s": None if age is None else round(age, 1),
                "run_id": host.run_id,
                "seq": host.seq,
                "supervisord_id": host.supervisord_id,
                "listener": host.listener,
            }

        return {
            "hosts": [host_json(host) for host in hosts],
            "duplicates": [[d.a, d.b] for d in duplicates],
            # why each pair is one: the shared supervisord_id, or (older listeners) shared pids
            "duplicate_basis": [{"hosts": [d.a, d.b], "basis": d.basis, "detail": d.detail} for d in duplicates],
        }


def _pairs(names: List[str]) -> List[Tuple[str, str]]:
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]


def describe_duplicate(duplicate: Duplicate) -> str:
    a, b = duplicate.a, duplicate.b
    if duplicate.basis == SAME_SUPERVISORD:
        return (f"DUPLICATE: {a} and {b} are one supervisord publishing under two names "
                f"(same supervisord_id {duplicate.detail})")  # fmt: skip
    return (f"DUPLICATE: {a} and {b} report the same processes with the same pids ({duplicate.detail}): "
            "one supervisord publishing under two names, guessed because one of them publishes no "
            "supervisord_id (an older listener)")  # fmt: skip
