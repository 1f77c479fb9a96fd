"""Supervisor events, parsed from an envelope's payload into typed values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Optional, Union

# Supervisor's process states and their numeric codes (supervisor.states.ProcessStates).
STATE_CODES: Dict[str, int] = {
    "STOPPED": 0,
    "STARTING": 10,
    "RUNNING": 20,
    "BACKOFF": 30,
    "STOPPING": 40,
    "EXITED": 100,
    "FATAL": 200,
    "UNKNOWN": 1000,
}

PROCESS_STATE_PREFIX = "PROCESS_STATE_"
# Keys supervisord puts in PROCESS_STATE and PROCESS_GROUP payloads. Splitting only
# at these keys lets process names contain spaces and colons.
_PAYLOAD_KEYS = ("processname", "groupname", "from_state", "tries", "expected", "pid", "when")
_KEY_RE = re.compile(r"(?:^|(?<= ))(" + "|".join(_PAYLOAD_KEYS) + r"):")


class EventParseError(ValueError):
    """A payload that does not have the fields its event name promises."""


@dataclass(frozen=True)
class ProcessStateChange:
    """A ``PROCESS_STATE_*`` event: *name* went from *from_state* to *to_state*."""

    name: str
    group: str
    from_state: str
    to_state: str
    pid: int
    received: float
    expected: Optional[bool] = None
    tries: Optional[int] = None


@dataclass(frozen=True)
class GroupChange:
    """``PROCESS_GROUP_ADDED`` or ``PROCESS_GROUP_REMOVED``."""

    group: str
    added: bool
    received: float


@dataclass(frozen=True)
class Tick:
    """``TICK_5``, ``TICK_60`` or ``TICK_3600``."""

    eventname: str
    when: int


@dataclass(frozen=True)
class OtherEvent:
    """Any event raptor does not act on."""

    eventname: str


Event = Union[ProcessStateChange, GroupChange, Tick, OtherEvent]


def parse_payload_fields(payload: str) -> Dict[str, str]:
    """Split the first line of a payload into its ``key:value`` fields."""
    line = payload.split("\n", 1)[0]
    matches = list(_KEY_RE.finditer(line))
    if not matches or matches[0].start() != 0:
        raise EventParseError(f"payload has no key:value fields: {line[:200]!r}")
    fields: Dict[str, str] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() - 1 if index + 1 < len(matches) else len(line)
        fields[match.group(1)] = line[match.end() : end]
    return fields


def _int_field(fields: Dict[str, str], key: str, eventname: str) -> Optional[int]:
    raw = fields.get(key)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise EventParseError(f"{eventname}: {key} is not a number: {raw[:40]!r}") from None


def parse_event(eventname: str, payload: str, received: float) -> Event:
    """Turn one event into a typed value; raise :class:`EventParseError` on junk."""
    if eventname.startswith(PROCESS_STATE_PREFIX) and eventname != "PROCESS_STATE":
        to_state = eventname[len(PROCESS_STATE_PREFIX) :]
        if to_state not in STATE_CODES:
            raise EventParseError(f"unknown process state in event name {eventname!r}")
        fields = parse_payload_fields(payload)
        name = fields.get("processname", "")
        if not name:
            raise EventParseError(f"{eventname}: payload has no processname: {payload[:200]!r}")
        from_state = fields.get("from_state", "")
        if from_state not in STATE_CODES:
            raise EventParseError(f"{eventname}: unknown from_state {from_state[:40]!r}")
        expected = _int_field(fields, "expected", eventname)
        return ProcessStateChange(
            name=name,
            group=fields.get("groupname", "") or name,
            from_state=from_state,
            to_state=to_state,
            pid=_int_field(fields, "pid", eventname) or 0,
            received=received,
            expected=None if expected is None else bool(expected),
            tries=_int_field(fields, "tries", eventname),
        )
    if eventname in ("PROCESS_GROUP_ADDED", "PROCESS_GROUP_REMOVED"):
        group = parse_payload_fields(payload).get("groupname", "")
        if not group:
            raise EventParseError(f"{eventname}: payload has no groupname: {payload[:200]!r}")
        return GroupChange(group=group, added=eventname.endswith("ADDED"), received=received)
    if eventname.startswith("TICK_"):
        when = _int_field(parse_payload_fields(payload), "when", eventname)
        return Tick(eventname=eventname, when=int(received) if when is None else when)
    return OtherEvent(eventname)
