"""What the sink writes, decided without Redis, threads or clocks.

A batch of queued changes, or a resync against supervisord's word, becomes a plan:
the numbered messages to publish and the snapshot fields to set and delete. The
sink sends a plan in one MULTI/EXEC and only then applies it to its process table,
so a plan made again from the same inputs (a batch whose EXEC failed) is the same
plan, with the same seqs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union, cast

from .. import __version__
from ..keys import (
    META_PID,
    META_PROCESSES,
    META_REFRESHED,
    META_RUN_ID,
    META_SEQ,
    META_STARTED,
    META_UPDATED,
    META_VERSION,
)
from ..messages import Message, history_entry, removal_message, state_message
from .events import GroupChange, ProcessStateChange
from .outbox import Item
from .process_table import ProcessInfo, ProcessTable, log_paths, same_state, with_log_paths


@dataclass(frozen=True)
class Transition:
    """A process to report in the state *info* holds, coming from *from_state*."""

    info: ProcessInfo
    from_state: Optional[str]
    expected: Optional[bool] = None  # supervisord's word on an exit (history only)


@dataclass(frozen=True)
class Removal:
    """A process (or group) gone at *at*."""

    name: str
    group: str
    at: float


Change = Union[Transition, Removal]


@dataclass(frozen=True)
class Numbered:
    """The messages of some changes, with their history entries (same order)."""

    messages: Tuple[Message, ...]
    entries: Tuple[Dict[str, str], ...]


def number(changes: Sequence[Change], *, host: str, run_id: str, seq: int, resync: bool) -> Numbered:
    """One message (and history entry) per change, in order, numbered from ``seq + 1`` on."""
    messages: List[Message] = []
    entries: List[Dict[str, str]] = []
    for change in changes:
        seq += 1
        if isinstance(change, Transition):
            messages.append(
                state_message(
                    host,
                    change.info,
                    event=f"PROCESS_STATE_{change.info['statename']}",
                    from_state=change.from_state,
                    seq=seq,
                    run_id=run_id,
                    resync=resync,
                )
            )
            entries.append(history_entry(messages[-1], change.expected))
        else:
            messages.append(
                removal_message(host, change.name, change.group, now=change.at, seq=seq, run_id=run_id, resync=resync)
            )
            entries.append(history_entry(messages[-1]))
    return Numbered(tuple(messages), tuple(entries))


def behind(previous: ProcessInfo, change: ProcessStateChange) -> bool:
    """Whether *change* is older than *previous*, the state last published for its
    process: it does not start from that state, or it is about another run of it (the
    pid differs). Events supervisord queued before a resync read its newer truth are
    such; publishing them would send a process back in time (RUNNING, then the older
    STARTING and RUNNING). Events lost in between (supervisord discarded them) look
    the same: either way, the resync this asks for publishes the real state."""
    if change.from_state != previous["statename"]:
        return True
    pids_known = bool(change.pid and previous["pid"])
    return previous["statename"] in ("RUNNING", "STOPPING") and pids_known and change.pid != previous["pid"]


@dataclass(frozen=True)
class BatchPlan:
    messages: Tuple[Message, ...]
    entries: Tuple[Dict[str, str], ...]  # the history entry of each message
    updated: Mapping[str, ProcessInfo]  # snapshot fields to set: name -> entry
    removed: Mapping[str, str]  # snapshot fields to delete: name -> group
    # A group was added: it publishes nothing, the settle resync reports its
    # processes (wanted whatever becomes of this batch's EXEC).
    group_added: bool
    seq: int  # the last seq this plan uses
    behind: int  # events left out as older than what was published (see behind())


def plan_batch(
    items: Sequence[Item], table: ProcessTable, *, host: str, run_id: str, seq: int, ordered: bool = False
) -> BatchPlan:
    """The messages and snapshot changes of *items*, numbered after *seq*, derived
    from *table* (which this does not change). *ordered*: *table* holds supervisord's
    truth (the last resync could ask it), so events :func:`behind` it are left out;
    without it, an event is the best word there is."""
    updated: Dict[str, ProcessInfo] = {}
    removed: Dict[str, str] = {}
    changes: List[Change] = []
    group_added = False
    late = 0
    for item in items:
        if isinstance(item, ProcessStateChange):
            previous = updated.get(item.name) or (None if item.name in removed else table.get(item.name))
            if ordered and previous is not None and behind(previous, item):
                late += 1
                continue
            info = table.derive(previous, item)
            updated[item.name] = info
            removed.pop(item.name, None)
            changes.append(Transition(info, item.from_state, item.expected))
        elif isinstance(item, GroupChange):
            if item.added:
                group_added = True
                continue
            members = {info["name"] for info in table.members(item.group)}
            members |= {name for name, info in updated.items() if info["group"] == item.group}
            members.discard(item.group)
            for name in [item.group, *sorted(members)]:
                changes.append(Removal(name, item.group, item.received))
                updated.pop(name, None)
                removed[name] = item.group
    numbered = number(changes, host=host, run_id=run_id, seq=seq, resync=False)
    return BatchPlan(
        numbered.messages, numbered.entries, updated, removed, group_added, seq + len(numbered.messages), late
    )


@dataclass(frozen=True)
class ResyncPlan:
    target: Mapping[str, ProcessInfo]  # the whole snapshot to store in place of the old one
    messages: Tuple[Message, ...]  # a correction for every process whose stored state differs
    entries: Tuple[Dict[str, str], ...]  # the history entry of each message
    seq: int  # the last seq this plan uses
    # Differences held back (reported when a resync sees them again): name -> (stored, truth).
    held: Mapping[str, Tuple[Optional[ProcessInfo], ProcessInfo]] = field(default_factory=dict)
    # Those a next resync may confirm: none while supervisord could not deliver events.
    unconfirmed: Mapping[str, Tuple[Optional[ProcessInfo], ProcessInfo]] = field(default_factory=dict)


def plan_resync(
    truth: Optional[Sequence[ProcessInfo]],
    stored: Mapping[str, ProcessInfo],
    known: Mapping[str, ProcessInfo],
    *,
    host: str,
    run_id: str,
    seq: int,
    now: float,
    confirm: bool = False,
    unconfirmed: Mapping[str, Tuple[Optional[ProcessInfo], ProcessInfo]] = MappingProxyType({}),
    listener: Optional[str] = None,
    caught_up: bool = True,
) -> ResyncPlan:
    """The snapshot to store and its corrections, numbered after *seq*.

    *truth* is supervisord's ``getAllProcessInfo()``, or None when there is none to
    ask; *stored* what Redis holds; *known* what this run has seen.

    With *confirm* (a routine resync: the listener's start, a burst settled, a TICK),
    a process new or in another state than stored is reported only if the previous
    resync saw the same (*unconfirmed*) while supervisord could deliver events to the
    *listener* (it was RUNNING in its own *truth*) and had delivered all it held
    (*caught_up*: the sink watched the listener's input stay empty). Until then supervisord may hold
    events of that process, older than its answer: reported at once, the process
    would get a state ahead of them, and they, arriving, would be older than it (left
    out, lost to the history). Held back, they arrive and tell what happened, and the
    difference is gone. Gone processes are reported at once."""
    held: Dict[str, Tuple[Optional[ProcessInfo], ProcessInfo]] = {}
    if truth is not None:
        target = {info["name"]: info for info in truth}
        gone = [info for name, info in stored.items() if name not in target]
    else:
        # Without supervisord's word, nothing can be declared gone: keep what is
        # stored and overlay what this run has seen.
        target = dict(stored)
        target.update(known)
        gone = []
    own = target.get(listener) if listener is not None and truth is not None else None
    delivering = caught_up and (own is None or own["statename"] == "RUNNING")
    changes: List[Change] = []
    for name, info in list(target.items()):
        old = stored.get(name)
        if old is not None and same_state(old, info):
            continue
        if confirm and not (delivering and _seen(unconfirmed.get(name), old, info)):
            held[name] = (old, info)
            if old is None:
                del target[name]
            else:
                target[name] = with_log_paths(old, log_paths(info))  # the state held back, not the paths
            continue
        changes.append(Transition(info, None if old is None else old["statename"]))
    changes.extend(Removal(info["name"], info["group"], now) for info in gone)
    numbered = number(changes, host=host, run_id=run_id, seq=seq, resync=True)
    # A sighting while supervisord could not deliver events, or held some, confirms nothing.
    return ResyncPlan(
        target, numbered.messages, numbered.entries, seq + len(numbered.messages), held, held if delivering else {}
    )


def _seen(
    before: Optional[Tuple[Optional[ProcessInfo], ProcessInfo]], old: Optional[ProcessInfo], info: ProcessInfo
) -> bool:
    """Whether the difference *old* -> *info* is the one seen *before*."""
    if before is None or not same_state(before[1], info):
        return False
    return (before[0] is None) == (old is None) and (old is None or same_state(cast(ProcessInfo, before[0]), old))


def meta_record(
    *,
    run_id: str,
    seq: int,
    now: float,
    started: float,
    processes: int,
    pid: int,
    refreshed: bool,
    extra: Mapping[str, Any],
) -> Dict[str, Any]:
    """The fields of ``host_meta:<host>`` (:mod:`raptor.keys`); *refreshed* after a resync."""
    meta: Dict[str, Any] = {
        META_RUN_ID: run_id,
        META_SEQ: seq,
        META_UPDATED: f"{now:.3f}",
        META_VERSION: __version__,
        META_PID: pid,
        META_STARTED: f"{started:.3f}",
        META_PROCESSES: processes,
    }
    if refreshed:
        meta[META_REFRESHED] = f"{now:.3f}"
    meta.update(extra)
    return meta
