"""What raptor knows of each process, in ``getAllProcessInfo()``'s own shape.

Entries come either from supervisord (the authoritative snapshot) or are derived
from events between two snapshots. Derived entries are exact for state, pid and
the start/stop times raptor saw; what an event does not carry (exit status,
log file paths) is kept from the last snapshot.
"""

from __future__ import annotations

import datetime
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional

from .events import STATE_CODES, ProcessStateChange

ProcessInfo = Dict[str, Any]

INFO_FIELDS = (
    "name",
    "group",
    "description",
    "start",
    "stop",
    "now",
    "state",
    "statename",
    "spawnerr",
    "exitstatus",
    "logfile",
    "stdout_logfile",
    "stderr_logfile",
    "pid",
)
_INT_FIELDS = ("start", "stop", "now", "state", "exitstatus", "pid")
_STR_FIELDS = ("name", "group", "description", "statename", "spawnerr", "logfile", "stdout_logfile", "stderr_logfile")
BACKOFF_SPAWNERR = "Exited too quickly (process log may have details)"
_NO_PID_STATES = ("STOPPED", "EXITED", "BACKOFF", "FATAL", "STARTING")


def describe(info: Mapping[str, Any]) -> str:
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


def normalize_info(raw: Mapping[str, Any]) -> ProcessInfo:
    """Coerce one ``getAllProcessInfo()`` entry (or a stored one) to the exact shape.

    Raises ValueError/KeyError/TypeError on an entry that is not one.
    """
    info = blank_info(str(raw["name"]), str(raw.get("group") or raw["name"]))
    for key in _INT_FIELDS:
        if key in raw and raw[key] is not None:
            info[key] = int(raw[key])
    for key in _STR_FIELDS:
        if key in raw and raw[key] is not None:
            info[key] = str(raw[key])
    statename = info["statename"]
    if statename not in STATE_CODES:
        raise ValueError(f"unknown statename {statename!r}")
    info["state"] = STATE_CODES[statename]
    if raw.get("description") is None:
        info["description"] = describe(info)
    return info


def apply_change(previous: Optional[ProcessInfo], change: ProcessStateChange) -> ProcessInfo:
    """The entry for ``change.name`` after *change*, derived from *previous*."""
    info = dict(previous) if previous is not None else blank_info(change.name, change.group)
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


def same_state(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two entries describe the same process state.

    A pid of 0 means "not known" in a derived entry (STARTING), so it only
    differs when both sides know a pid.
    """
    if a["statename"] != b["statename"]:
        return False
    return not (a["pid"] and b["pid"] and a["pid"] != b["pid"])


class ProcessTable:
    """Latest known entry of every process of this supervisord."""

    def __init__(self) -> None:
        self._entries: Dict[str, ProcessInfo] = {}

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
