"""What raptor knows of each process, in ``getAllProcessInfo()``'s own shape.

Entries come either from supervisord (the authoritative snapshot) or are derived
from events between two snapshots. Derived entries are exact for state, pid and
the start/stop times raptor saw; the exit status, which an event does not carry, is
kept from the last snapshot. The log file paths, which no event carries either, are
fixed by supervisord's configuration: the table learns them from every
``getAllProcessInfo()`` the sink makes, whether or not that resync stored the
process, and every derived entry gets them (:meth:`ProcessTable.derive`).
"""

from __future__ import annotations

import datetime
import time
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, TypedDict

from .events import STATE_CODES, ProcessStateChange


class ProcessInfo(TypedDict):
    """One ``getAllProcessInfo()`` entry, epoch ints; the key order is the snapshot's JSON order."""

    name: str
    group: str
    description: str
    start: int
    stop: int
    now: int
    state: int
    statename: str
    spawnerr: str
    exitstatus: int
    logfile: str
    stdout_logfile: str
    stderr_logfile: str
    pid: int


class LogPaths(NamedTuple):
    """What supervisord's configuration fixes for a process and no event carries."""

    logfile: str
    stdout_logfile: str
    stderr_logfile: str


def log_paths(info: ProcessInfo) -> LogPaths:
    return LogPaths(info["logfile"], info["stdout_logfile"], info["stderr_logfile"])


def with_log_paths(info: ProcessInfo, paths: Optional[LogPaths]) -> ProcessInfo:
    """*info* with *paths* (a copy), or *info* itself when there are none to give."""
    if paths is None or log_paths(info) == paths:
        return info
    info = info.copy()
    info["logfile"], info["stdout_logfile"], info["stderr_logfile"] = paths
    return info


BACKOFF_SPAWNERR = "Exited too quickly (process log may have details)"
_NO_PID_STATES = ("STOPPED", "EXITED", "BACKOFF", "FATAL", "STARTING")


def describe(info: ProcessInfo) -> str:
    """The ``description`` supervisord would give (rpcinterface._interpretProcessInfo)."""
    statename = info["statename"]
    if statename == "RUNNING":
        start = datetime.datetime(*time.gmtime(info["start"])[:6])
        now = datetime.datetime(*time.gmtime(info["now"])[:6])
        uptime = max(now - start, datetime.timedelta(0))
        return f"pid {info['pid']}, uptime {uptime}"
    if statename in ("FATAL", "BACKOFF"):
        return info["spawnerr"] or f'unknown error (try "tail {info["name"]}")'
    if statename in ("STOPPED", "EXITED"):
        if info["start"]:
            return datetime.datetime(*time.localtime(info["stop"])[:7]).strftime("%b %d %I:%M %p")
        return "Not started"
    return ""


def blank_info(name: str, group: str) -> ProcessInfo:
    return {
        "name": name,
        "group": group,
        "description": "Not started",
        "start": 0,
        "stop": 0,
        "now": 0,
        "state": STATE_CODES["STOPPED"],
        "statename": "STOPPED",
        "spawnerr": "",
        "exitstatus": 0,
        "logfile": "",
        "stdout_logfile": "",
        "stderr_logfile": "",
        "pid": 0,
    }


def _int(raw: Mapping[str, Any], key: str, default: int) -> int:
    value = raw.get(key)
    return default if value is None else int(value)


def _str(raw: Mapping[str, Any], key: str, default: str) -> str:
    value = raw.get(key)
    return default if value is None else str(value)


def normalize_info(raw: Mapping[str, Any]) -> ProcessInfo:
    """Coerce one ``getAllProcessInfo()`` entry (or a stored one) to the exact shape.

    Raises ValueError/KeyError/TypeError on an entry that is not one.
    """
    blank = blank_info(str(raw["name"]), str(raw.get("group") or raw["name"]))
    info: ProcessInfo = {
        "name": _str(raw, "name", blank["name"]),
        "group": _str(raw, "group", blank["group"]),
        "description": _str(raw, "description", blank["description"]),
        "start": _int(raw, "start", blank["start"]),
        "stop": _int(raw, "stop", blank["stop"]),
        "now": _int(raw, "now", blank["now"]),
        "state": _int(raw, "state", blank["state"]),
        "statename": _str(raw, "statename", blank["statename"]),
        "spawnerr": _str(raw, "spawnerr", blank["spawnerr"]),
        "exitstatus": _int(raw, "exitstatus", blank["exitstatus"]),
        "logfile": _str(raw, "logfile", blank["logfile"]),
        "stdout_logfile": _str(raw, "stdout_logfile", blank["stdout_logfile"]),
        "stderr_logfile": _str(raw, "stderr_logfile", blank["stderr_logfile"]),
        "pid": _int(raw, "pid", blank["pid"]),
    }
    statename = info["statename"]
    if statename not in STATE_CODES:
        raise ValueError(f"unknown statename {statename!r}")
    info["state"] = STATE_CODES[statename]
    if raw.get("description") is None:
        info["description"] = describe(info)
    return info


def apply_change(previous: Optional[ProcessInfo], change: ProcessStateChange) -> ProcessInfo:
    """The entry for ``change.name`` after *change*, derived from *previous*."""
    info = previous.copy() if previous is not None else blank_info(change.name, change.group)
    now = int(change.received)
    to_state = change.to_state
    info["group"] = change.group
    info["statename"] = to_state
    info["state"] = STATE_CODES[to_state]
    info["now"] = now
    if to_state == "STARTING":
        info["start"] = now
        info["spawnerr"] = ""
    elif to_state == "RUNNING" and not info["start"]:
        info["start"] = now
    if to_state in ("STOPPED", "EXITED", "BACKOFF") and change.from_state != to_state:
        info["stop"] = now
    if to_state == "BACKOFF":
        info["spawnerr"] = BACKOFF_SPAWNERR
    elif to_state == "RUNNING":
        info["spawnerr"] = ""
    info["pid"] = 0 if to_state in _NO_PID_STATES else change.pid
    info["description"] = describe(info)
    return info


def same_state(a: ProcessInfo, b: ProcessInfo) -> bool:
    """Whether two entries describe the same process state.

    A pid of 0 means "not known" in a derived entry (STARTING), so it only
    differs when both sides know a pid.
    """
    if a["statename"] != b["statename"]:
        return False
    return not (a["pid"] and b["pid"] and a["pid"] != b["pid"])


class ProcessTable:
    """Latest known entry of every process of this supervisord, and the log paths
    supervisord last reported for each (kept apart: a resync may hold a process back
    from the entries, never its paths)."""

    def __init__(self) -> None:
        self._entries: Dict[str, ProcessInfo] = {}
        self._paths: Dict[str, LogPaths] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> Optional[ProcessInfo]:
        return self._entries.get(name)

    def entries(self) -> Dict[str, ProcessInfo]:
        return dict(self._entries)

    def set(self, info: ProcessInfo) -> None:
        self._entries[info["name"]] = info

    def discard(self, name: str) -> None:
        self._entries.pop(name, None)

    def members(self, group: str) -> List[ProcessInfo]:
        return [info for info in self._entries.values() if info["group"] == group]

    def replace(self, infos: Iterable[ProcessInfo]) -> None:
        self._entries = {info["name"]: info for info in infos}

    def learn(self, truth: Iterable[ProcessInfo]) -> None:
        """Take the log paths of a whole ``getAllProcessInfo()`` answer."""
        self._paths = {info["name"]: log_paths(info) for info in truth}

    def paths(self, name: str) -> Optional[LogPaths]:
        return self._paths.get(name)

    def derive(self, previous: Optional[ProcessInfo], change: ProcessStateChange) -> ProcessInfo:
        """:func:`apply_change`, with the log paths supervisord last reported."""
        return with_log_paths(apply_change(previous, change), self._paths.get(change.name))
