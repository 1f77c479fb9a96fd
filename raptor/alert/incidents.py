"""Which incidents are open: the alerter's rules applied to what the fleet does. Pure: no
Redis, no clock of its own (every call says when it is), no delivery.

One incident per (rule, host, program) — program is "" for a host's own incidents — so a
process that crashes a hundred times is one incident, reminded, then resolved once.

Process rules read the fleet's transitions (:meth:`Engine.transition`):

- ``fatal``: the process entered FATAL; resolved once it has stayed RUNNING
  ``resolve_after`` s (or is removed).
- ``unexpected_exit``: EXITED that supervisord did not expect; resolved the same way, so
  a process that dies again a little after each start stays one incident.
- ``crash_loop``: ``starts`` crashes within ``within`` s, a crash being any end of a run
  that supervisord answers with another start: BACKOFF or EXITED (see :func:`crashed`);
  resolved once it has stayed RUNNING for ``within`` s.
- ``not_running``: out of RUNNING for ``after`` s in a state that means it should run
  (STARTING, BACKOFF, EXITED, FATAL, UNKNOWN: not STOPPED, which is someone's choice),
  counted from when it left RUNNING (or was started after a stop), not from its last
  change among those states; resolved when RUNNING, STOPPED or removed.

Host rules read the fleet's state (:meth:`Engine.hosts`), as ``raptor status --json``
gives it: ``stale`` (snapshot older than ``after`` s), ``duplicate`` (one supervisord under
two names: one incident per pair, filed under the first name), ``discarded`` (the listener
counts events supervisord discarded: open while the count grows, resolved after
``remind_every`` without growth, or at once when it is reset).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Deque, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from ..consumer.history import Transition
from .config import Rule

SHOULD_RUN = frozenset({"STARTING", "BACKOFF", "EXITED", "FATAL", "UNKNOWN"})

Key = Tuple[str, str, str]  # (rule name, host, program)


def crashed(t: Transition) -> bool:
    """Whether *t* is a crash, what ``crash_loop`` counts: BACKOFF (a start that died
    before ``startsecs``) or EXITED (a run that reached RUNNING and ended), expected or
    not. Never STARTING: that is supervisord's answer to a crash, not one more.

    An exit supervisord expected is counted too: with ``autorestart=true``, a program
    that exits 0 after 2 s is restarted for ever, and an endless restart is a loop (the
    ``unexpected_exit`` rule is the one that reads ``expected``). BACKOFF is counted so
    that a program with a large ``startretries`` that never starts (STARTING <-> BACKOFF
    for hours) is a loop. With supervisord's default ``startretries=3``, a program that
    never starts makes 4 BACKOFFs, then FATAL: under the default 5, so it is one notice,
    ``fatal``, not a crash loop too."""
    return t.to_state in ("BACKOFF", "EXITED")


@dataclass
class Incident:
    rule: str
    kind: str
    host: str
    program: str
    opened: float
    evidence: List[str] = field(default_factory=list)  # what happened, newest last (at most 10)
    last_notified: float = 0.0

    @property
    def key(self) -> Key:
        return (self.rule, self.host, self.program)

    def add(self, line: str) -> None:
        self.evidence.append(line)
        del self.evidence[:-10]


@dataclass(frozen=True)
class Change:
    """What to tell: an incident ``opened``, ``reminded`` or ``resolved`` at *at*."""

    what: str
    incident: Incident
    at: float


@dataclass
class _Process:
    state: Optional[str] = None
    # When it entered `state`; kept while it moves among SHOULD_RUN states (STARTING,
    # BACKOFF, EXITED...): not_running times how long it has not been RUNNING.
    since: float = 0.0
    crashes: Deque[float] = field(default_factory=deque)  # when it crashed (crashed()), oldest first
    app: Optional[str] = None


class Engine:
    """The open incidents of *rules*; feed it with :meth:`transition`, :meth:`hosts` and
    :meth:`tick`, each returning the changes to notify."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        self.open: Dict[Key, Incident] = {}
        self._procs: Dict[Tuple[str, str], _Process] = {}
        self._discarded: Dict[str, Tuple[int, float]] = {}  # host -> (count, when it last grew)
        self._discarded_changed = False
        # What changed since the last save (:meth:`changed_records`): saved piecemeal, a
        # fleet's 50,000 quiet processes are not rewritten at every batch.
        self._dirty_procs: Set[Tuple[str, str]] = set()
        self._dirty_incidents: Set[Key] = set()
        self._keep = max([r.within for r in self.rules if r.kind == "crash_loop"] or [0.0])
        self._seen = 0.0  # the alerter's clock at the call: when a notice would go out

    # -- process rules ----------------------------------------------------------------------

    def transition(self, host: str, app: Optional[str], t: Transition, seen: Optional[float] = None) -> List[Change]:
        """One transition of *host*'s process (its app from its name, None if not a
        Velociraptor name), read at *seen* (default: the transition's time)."""
        self._seen = t.at if seen is None else seen
        proc = self._procs.setdefault((host, t.process), _Process())
        proc.app = app
        self._dirty_procs.add((host, t.process))
        while proc.crashes and proc.crashes[0] < t.at - self._keep:
            proc.crashes.popleft()
        if crashed(t):
            proc.crashes.append(t.at)
        if t.to_state != proc.state:
            still_down = proc.state in SHOULD_RUN and t.to_state in SHOULD_RUN
            proc.state, proc.since = t.to_state, proc.since if still_down else t.at
        changes: List[Change] = []
        for rule in self.rules:
            if rule.match.matches(host, app, t.process):
                changes += self._apply(rule, host, t, proc)
        if t.to_state is None:
            del self._procs[(host, t.process)]  # removed: nothing more to watch
        return changes

    def _apply(self, rule: Rule, host: str, t: Transition, proc: _Process) -> List[Change]:
        key = (rule.name, host, t.process)
        line = _describe(t)
        if t.to_state is None or (rule.kind == "not_running" and t.to_state in ("RUNNING", "STOPPED")):
            return self._resolve(key, t.at, line)
        if rule.kind == "crash_loop":
            recent = sum(1 for at in proc.crashes if at >= t.at - rule.within)
            if crashed(t) and recent >= rule.starts:
                return self._open(rule, host, t.process, t.at, f"{line} ({recent} crashes in {rule.within:.0f} s)")
        opens = (rule.kind == "fatal" and t.to_state == "FATAL") or (
            rule.kind == "unexpected_exit" and t.to_state == "EXITED" and t.expected is False
        )
        if opens:
            return self._open(rule, host, t.process, t.at, line)
        if key in self.open:
            self.open[key].add(line)
            self._dirty_incidents.add(key)
        return []

    # -- host rules -------------------------------------------------------------------------

    def hosts(self, report: Mapping[str, Any], now: float) -> List[Change]:
        """The fleet's state, ``raptor status --json``'s shape without the process lists."""
        self._seen = now
        changes: List[Change] = []
        hosts = [h for h in report.get("hosts", []) if isinstance(h, dict)]
        names = {str(h.get("host")) for h in hosts}
        pairs = {tuple(sorted(map(str, pair))) for pair in report.get("duplicates", []) if len(pair) == 2}
        for rule in self.rules:
            if rule.kind == "stale":
                for host in hosts:
                    name, age = str(host.get("host")), host.get("age_s")
                    if not rule.match.matches(name) or not isinstance(age, (int, float)):
                        continue
                    key = (rule.name, name, "")
                    if age > rule.after:
                        if key not in self.open:
                            changes += self._open(rule, name, "", now, f"snapshot not refreshed for {age:.0f} s")
                    else:
                        changes += self._resolve(key, now, f"snapshot refreshed {age:.0f} s ago")
                changes += self._resolve_gone(rule, names, now)
            elif rule.kind == "duplicate":
                for first, second in pairs:
                    if rule.match.matches(first) or rule.match.matches(second):
                        changes += self._open(rule, first, second, now, f"{first} and {second} are one supervisord")
                for key in [k for k in self.open if k[0] == rule.name and tuple(sorted(k[1:])) not in pairs]:
                    changes += self._resolve(key, now, "no longer one supervisord under two names")
            elif rule.kind == "discarded":
                changes += self._discards(rule, hosts, now)
        return changes

    def _discards(self, rule: Rule, hosts: Iterable[Mapping[str, Any]], now: float) -> List[Change]:
        changes: List[Change] = []
        quiet = rule.remind_every or 3600.0
        for host in hosts:
            name = str(host.get("host"))
            listener = host.get("listener") or {}
            count = listener.get("discarded_by_supervisord") if isinstance(listener, dict) else None
            if not isinstance(count, int) or not rule.match.matches(name):
                continue
            before, grew = self._discarded.get(name, (count, now))
            key = (rule.name, name, "")
            if count > before:
                self._count(name, (count, now))
                line = f"supervisord discarded {count - before} events ({count} since the listener started)"
                changes += self._open(rule, name, "", now, line)
            elif count < before or now - grew >= quiet:
                self._count(name, (count, grew if count >= before else now))
                changes += self._resolve(key, now, "no events discarded since")
            else:
                self._count(name, (count, grew))
        return changes

    def _count(self, host: str, value: Tuple[int, float]) -> None:
        if self._discarded.get(host) != value:
            self._discarded[host] = value
            self._discarded_changed = True

    def _resolve_gone(self, rule: Rule, names: Iterable[str], now: float) -> List[Change]:
        present = set(names)
        gone = [k for k in self.open if k[0] == rule.name and k[1] not in present]
        changes: List[Change] = []
        for key in gone:  # its snapshot expired: the host was removed, not stale any more
            changes += self._resolve(key, now, "the host's records are gone from Redis")
        return changes

    # -- time -------------------------------------------------------------------------------

    def tick(self, now: float, seen: Optional[float] = None) -> List[Change]:
        """Time-based rules at *now* (the fleet's time: a backlog being read is behind
        the clock) and reminders at *seen* (the alerter's clock; default *now*)."""
        self._seen = now if seen is None else seen
        changes: List[Change] = []
        for rule in self.rules:
            if rule.kind == "not_running":
                for (host, process), proc in self._procs.items():
                    late = proc.state in SHOULD_RUN and now - proc.since >= rule.after
                    if (
                        late
                        and (rule.name, host, process) not in self.open
                        and rule.match.matches(host, proc.app, process)
                    ):
                        line = f"{proc.state}, not RUNNING for {now - proc.since:.0f} s"
                        changes += self._open(rule, host, process, now, line)
            settle = {"crash_loop": rule.within, "fatal": rule.resolve_after, "unexpected_exit": rule.resolve_after}
            if rule.kind in settle:  # resolved once the process has stayed RUNNING that long
                for (host, process), proc in self._procs.items():
                    key = (rule.name, host, process)
                    if key in self.open and proc.state == "RUNNING" and now - proc.since >= settle[rule.kind]:
                        changes += self._resolve(key, now, f"RUNNING for {now - proc.since:.0f} s")
        by_name = {rule.name: rule for rule in self.rules}
        for incident in self.open.values():
            every = by_name[incident.rule].remind_every if incident.rule in by_name else 0
            if every and self._seen - incident.last_notified >= every:
                incident.last_notified = self._seen
                self._dirty_incidents.add(incident.key)
                changes.append(Change("reminded", incident, self._seen))
        self._forget(now)
        return changes

    def _forget(self, now: float) -> None:
        """Drop the processes nothing is watching any more (quiet, no recent crash, no open
        incident): the fleet's processes are not all kept for ever."""
        watched = {(k[1], k[2]) for k in self.open}
        for where, proc in list(self._procs.items()):
            while proc.crashes and proc.crashes[0] < now - self._keep:
                proc.crashes.popleft()
            if not proc.crashes and proc.state not in SHOULD_RUN and where not in watched:
                del self._procs[where]
                self._dirty_procs.add(where)

    # -- the incidents ----------------------------------------------------------------------

    def _open(self, rule: Rule, host: str, program: str, at: float, line: str) -> List[Change]:
        key = (rule.name, host, program)
        incident = self.open.get(key)
        if incident is not None:
            incident.add(line)
            self._dirty_incidents.add(key)
            return []
        incident = Incident(rule.name, rule.kind, host, program, at, [line], last_notified=self._seen or at)
        self.open[key] = incident
        self._dirty_incidents.add(key)
        return [Change("opened", incident, at)]

    def _resolve(self, key: Key, at: float, line: str) -> List[Change]:
        incident = self.open.pop(key, None)
        if incident is None:
            return []
        incident.add(line)
        self._dirty_incidents.add(key)
        return [Change("resolved", incident, at)]

    # -- saving and loading -----------------------------------------------------------------

    def changed_records(self) -> Tuple[Dict[str, Optional[str]], Dict[str, Optional[str]]]:
        """What changed since the last call, as (procs, incidents): field -> JSON, or None
        for a record to delete. A process is kept only while something about it matters
        (crashes in a crash-loop window, a state that should not last, an open incident)."""
        procs: Dict[str, Optional[str]] = {}
        watched = {(k[1], k[2]) for k in self.open} if self._dirty_procs else set()
        for host, process in self._dirty_procs:
            proc = self._procs.get((host, process))
            field_name = json.dumps([host, process])
            matters = proc is not None and (proc.crashes or proc.state in SHOULD_RUN or (host, process) in watched)
            record = [proc.state, proc.since, list(proc.crashes), proc.app] if matters and proc else None
            procs[field_name] = json.dumps(record) if record else None
        incidents: Dict[str, Optional[str]] = {}
        for key in self._dirty_incidents:
            found = self.open.get(key)
            incidents[json.dumps(key)] = json.dumps(asdict(found)) if found is not None else None
        self._dirty_procs.clear()
        self._dirty_incidents.clear()
        return procs, incidents

    def changed_counters(self) -> Optional[str]:
        """The listeners' discarded-event counts as last seen (JSON), when they changed
        since the last call: a takeover must not take old growth for new, or miss it."""
        if not self._discarded_changed:
            return None
        self._discarded_changed = False
        return json.dumps(self._discarded)

    def load(self, procs: Mapping[str, str], incidents: Mapping[str, str], counters: Optional[str] = None) -> None:
        """The state :meth:`changed_records` and :meth:`changed_counters` saved (another
        alerter's, at a takeover)."""
        self._discarded = {host: (int(c), float(g)) for host, (c, g) in json.loads(counters or "{}").items()}
        self._discarded_changed = False
        self._procs.clear()
        self.open.clear()
        for field_name, value in procs.items():
            host, process = json.loads(field_name)
            state, since, crashes, app = json.loads(value)
            self._procs[(host, process)] = _Process(state, since, deque(crashes), app)
        for value in incidents.values():
            incident = Incident(**json.loads(value))
            self.open[incident.key] = incident
        self._dirty_procs.clear()
        self._dirty_incidents.clear()


def _describe(t: Transition) -> str:
    change = f"{t.from_state or '?'} -> {t.to_state}" if t.to_state else "removed"
    exit_text = ""
    if t.to_state == "EXITED":
        # supervisord's EXITED event does not carry the exit status: the listener's
        # record has it only when a resync read it, so a 0 may just be unknown.
        said = "" if t.expected is None else (" (expected)" if t.expected else " (unexpected)")
        exit_text = said + (f", exit status {t.exitstatus}" if t.exitstatus else "")
    return f"{t.process}: {change}{exit_text}"
