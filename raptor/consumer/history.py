"""What one host's history says: transitions, and per process restarts, crashes and time not running.

Pure: the entries come in as :class:`Transition` records (made from the messages that
:func:`raptor.messages.message_from_entry` returns for a ``host_history:<host>``
stream's entries), the window as two epochs; no Redis here. ``raptor history`` and the
RESTARTS column of ``raptor status`` read the stream and call :func:`analyze`.

The definitions, per process, within the window ``[since, until]``:

- **Restart**: a transition into STARTING of a process that had already been started.
  "Started" means seen in any state but STOPPED and UNKNOWN (STARTING, RUNNING,
  BACKOFF, STOPPING, EXITED, FATAL) earlier in the window, the state its first entry
  says it came from (``from_state``) included. So ``supervisorctl restart``
  (RUNNING -> STOPPING -> STOPPED -> STARTING), an automatic restart after an exit
  (EXITED -> STARTING), a start after FATAL, and each retry out of BACKOFF
  (BACKOFF -> STARTING) are restarts; the first start of a process that was STOPPED
  until then (or whose earlier state is unknown) is not.
- **Crashes**: every transition into EXITED that supervisord did not expect
  (``expected`` False: an exit it did not expect; None, from a publisher that does not
  say, is not counted), every transition into BACKOFF (a start that failed), and every
  transition into FATAL (supervisord gave up). Counted separately too
  (``unexpected_exits``, ``backoffs``, ``fatals``); ``crashes`` is their sum.
- **Not running** (:func:`time_not_running`, the one definition): the seconds of the
  window the process spent in a state other than RUNNING. Each entry changes the state
  at its time (the message's ``now``, else the entry id's time), clamped into the window
  and never before the process' previous entry. At the window's start the process was
  in the state its last entry *before* the window left it in, when the history has one
  (*earlier*). Without one, the time before its first entry in the window is unknown,
  not downtime, and is not counted: that entry's ``from_state`` is no evidence (a
  process supervisord has just created comes from STOPPED, and the window may open long
  before it existed). After the process was removed (PROCESS_GROUP_REMOVED), no time is
  counted either.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

STARTED = frozenset({"STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL"})
REMOVED = "PROCESS_GROUP_REMOVED"


def _epoch(iso: Any) -> Optional[float]:
    if not isinstance(iso, str) or not iso:
        return None
    try:
        return datetime.datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def process_label(name: str, group: str) -> str:
    """Supervisor's name for a process: ``group:name``, or ``name`` when they are equal."""
    return name if not group or group == name else f"{group}:{name}"


@dataclass(frozen=True)
class Transition:
    """One history entry of one process."""

    entry_id: str
    at: float  # epoch of the transition
    process: str  # process_label(name, group)
    name: str
    group: str
    event: str
    from_state: Optional[str]
    to_state: Optional[str]  # None for a removal
    pid: int = 0
    exitstatus: int = 0
    expected: Optional[bool] = None  # supervisord's word on an EXITED; None when not said
    resync: bool = False

    @classmethod
    def from_message(cls, entry_id: str, message: Mapping[str, Any], entry_time: float) -> Transition:
        """From a message as :func:`raptor.messages.message_from_entry` makes it;
        *entry_time* (the entry id's time) stands in for a missing ``now``."""
        name = str(message.get("name", ""))
        event = str(message.get("event", ""))
        removal = event == REMOVED
        if removal:
            headers = message.get("payload_headers")
            group = str(headers.get("groupname", "")) if isinstance(headers, dict) else ""
            at = _epoch(message.get("time"))
        else:
            group = str(message.get("group") or "")
            at = _epoch(message.get("now"))
        expected = message.get("expected")
        return cls(
            entry_id=entry_id,
            at=entry_time if at is None else at,
            process=process_label(name, group),
            name=name,
            group=group,
            event=event,
            from_state=None if removal else (message.get("from_state") or None),
            to_state=None if removal else str(message.get("statename") or "") or None,
            pid=int(message.get("pid") or 0),
            exitstatus=int(message.get("exitstatus") or 0),
            expected=expected if isinstance(expected, bool) else None,
            resync=bool(message.get("resync")),
        )

    def matches(self, program: str) -> bool:
        """Whether *program* names this process: ``group:name`` or ``name``."""
        return program in (self.process, self.name)

    def as_json(self) -> Dict[str, Any]:
        record = asdict(self)
        record["time"] = iso(self.at)
        return record


@dataclass
class ProcessSummary:
    """One process over the window; the definitions are the module's."""

    process: str
    transitions: int = 0
    restarts: int = 0
    unexpected_exits: int = 0
    backoffs: int = 0
    fatals: int = 0
    not_running_s: float = 0.0
    state: Optional[str] = None  # at the end of the window (None: removed, or unknown)

    @property
    def crashes(self) -> int:
        return self.unexpected_exits + self.backoffs + self.fatals

    def as_json(self) -> Dict[str, Any]:
        return {
            "process": self.process,
            "transitions": self.transitions,
            "restarts": self.restarts,
            "crashes": self.crashes,
            "unexpected_exits": self.unexpected_exits,
            "backoffs": self.backoffs,
            "fatals": self.fatals,
            "not_running_s": round(self.not_running_s, 3),
            "state": self.state,
        }


def _not_running(state: Optional[str]) -> bool:
    return state is not None and state != "RUNNING"


class NotRunning:
    """The module's definition of not running, one transition at a time: the seconds of
    ``[since, until]`` one process spent in a state other than RUNNING, from *before*, its
    last entry before the window if the history has one (else from its first entry's
    ``from_state``, unless that is STOPPED or None: a process supervisord has just created
    comes from STOPPED, a resync says nothing, so its state is unknown until that entry),
    and its entries in the window, in stream order, given to :meth:`add`.
    :func:`time_not_running` is the same over a list."""

    __slots__ = ("guess", "last", "state", "total", "until")

    def __init__(self, since: float, until: float, before: Optional[Transition] = None) -> None:
        self.state = before.to_state if before is not None else None  # None: unknown, or removed
        self.guess = before is None  # the first entry's from_state may tell the state at `since`
        self.last = since  # when `state` began (clamped into the window)
        self.until = until
        self.total = 0.0

    def add(self, transition: Transition) -> None:
        if self.guess:
            # FATAL, EXITED, BACKOFF...: down since the window's start (older history
            # trimmed by retention, or before the window).
            self.guess = False
            if transition.from_state != "STOPPED":
                self.state = transition.from_state
        at = min(max(transition.at, self.last), self.until)
        if _not_running(self.state):
            self.total += at - self.last
        self.last, self.state = at, transition.to_state

    def seconds(self) -> float:
        """The total, the time from the last entry to the window's end included."""
        tail = max(0.0, self.until - self.last) if _not_running(self.state) else 0.0
        return self.total + tail


def time_not_running(
    transitions: Iterable[Transition], since: float, until: float, before: Optional[Transition] = None
) -> float:
    """The seconds of ``[since, until]`` one process spent in a state other than RUNNING:
    *transitions* are its entries in the window (stream order), *before* its last entry
    before the window, if the history has one (the module's definition; :class:`NotRunning`)."""
    clock = NotRunning(since, until, before)
    for transition in transitions:
        clock.add(transition)
    return clock.seconds()


@dataclass
class _Counting:
    summary: ProcessSummary
    started: bool
    not_running: NotRunning


def analyze(
    transitions: Iterable[Transition],
    since: float,
    until: float,
    earlier: Mapping[str, Transition] = MappingProxyType({}),
) -> Dict[str, ProcessSummary]:
    """Per process (by :func:`process_label`), in order of first appearance: restarts,
    crashes and seconds not RUNNING within ``[since, until]``. *transitions* in stream
    order (the order of their ids); *earlier*: per process, its last entry before the
    window, where the history has one (what it was at the window's start)."""
    counting: Dict[str, _Counting] = {}
    for transition in transitions:
        process = transition.process
        count = counting.get(process)
        if count is None:
            clock = NotRunning(since, until, earlier.get(process))
            count = counting[process] = _Counting(ProcessSummary(process), transition.from_state in STARTED, clock)
        summary = count.summary
        count.not_running.add(transition)
        summary.transitions += 1
        to_state = transition.to_state
        if to_state == "STARTING" and count.started:
            summary.restarts += 1
        if to_state == "EXITED" and transition.expected is False:
            summary.unexpected_exits += 1
        elif to_state == "BACKOFF":
            summary.backoffs += 1
        elif to_state == "FATAL":
            summary.fatals += 1
        if to_state in STARTED:
            count.started = True
        summary.state = to_state
    for count in counting.values():
        count.summary.not_running_s = count.not_running.seconds()
    return {process: count.summary for process, count in counting.items()}


def restarts(summaries: Mapping[str, ProcessSummary]) -> int:
    return sum(s.restarts for s in summaries.values())


def select(transitions: Iterable[Transition], program: Optional[str]) -> List[Transition]:
    return [t for t in transitions if program is None or t.matches(program)]


def iso(epoch: float) -> str:
    """``2026-11-24T13:18:21+00:00`` (to the second; UTC)."""
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).isoformat()


def clock(seconds: float) -> str:
    """A duration as ``H:MM:SS``."""
    return str(datetime.timedelta(seconds=round(seconds)))


def report(
    host: str,
    program: Optional[str],
    transitions: Sequence[Transition],
    since: float,
    until: float,
    *,
    earlier: Mapping[str, Transition] = MappingProxyType({}),
) -> Dict[str, Any]:
    """``raptor history --json``: the transitions and the per-process summaries (*earlier*:
    :func:`analyze`'s)."""
    summaries = analyze(transitions, since, until, earlier)
    return {
        "host": host,
        "program": program,
        "since": iso(since),
        "until": iso(until),
        "transitions": [t.as_json() for t in transitions],
        "processes": [summaries[p].as_json() for p in sorted(summaries)],
    }
