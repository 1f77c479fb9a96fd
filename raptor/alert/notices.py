"""From incident changes to the notices sent: grouped, rate-limited, worded. Pure: every
call says when it is; delivery is someone else's.

- **Grouped**: the changes of one rule, of one kind (opened, reminded, resolved), for the
  same targets, that come within ``group_window`` s of the first are one notice: a
  fleet-wide burst is one message listing what it hit, not one message per process.
- **Rate-limited**: at most ``rate_limit`` notices per ``rate_per`` s. What comes beyond
  is not dropped: it is counted, and one summary notice says what was held back (per
  rule and kind) as soon as the limit allows.
- **Worded**: the host as the fleet knows it, the program, the rule, the evidence (the
  last transitions, exit status), and a link to ``raptor web`` when configured. Names
  come from Redis: untrusted, and printed with control characters escaped.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Deque, Dict, List, Optional, Tuple
from urllib.parse import urlencode

from ..consumer.text import printable
from .config import AlertConfig
from .incidents import Change, Incident, Key

LISTED = 20  # incidents listed by name in a grouped notice; the rest are counted
# Incidents a summary names in its keys; beyond, only counted (under a storm that lasts,
# the held-back list would otherwise grow, and with it the state saved at every step).
HELD_KEYS = 1000


@dataclass(frozen=True)
class Notice:
    title: str
    body: str
    targets: Tuple[str, ...]
    keys: Tuple[Key, ...]  # the incidents it tells of
    what: str  # opened, reminded, resolved, or suppressed


@dataclass
class _Group:
    first: float
    changes: List[Change] = field(default_factory=list)


class Notices:
    """Collects changes (:meth:`add`) and hands out the notices due (:meth:`due`)."""

    def __init__(self, config: AlertConfig) -> None:
        self.config = config
        self._targets = {rule.name: rule.notify for rule in config.rules}
        self._groups: Dict[Tuple[str, str, Tuple[str, ...]], _Group] = {}
        self._sent: Deque[float] = deque()  # when each recent notice went out
        self._held: Counter[Tuple[str, str]] = Counter()  # (rule, what) -> changes not told yet
        self._held_keys: List[Key] = []

    def add(self, changes: List[Change], now: float) -> None:
        """*changes*, seen at *now*: a group's window runs from when its first change was
        seen (an event's own time may be late, or rounded to the second)."""
        for change in changes:
            targets = self._targets.get(change.incident.rule, ())
            key = (change.what, change.incident.rule, targets)
            group = self._groups.setdefault(key, _Group(now))
            group.changes.append(change)

    def due(self, now: float) -> List[Notice]:
        """The notices to send now: groups whose window has passed, within the rate limit."""
        notices: List[Notice] = []
        # What was held back goes first: under a storm that lasts, new groups would
        # otherwise take every slot the limit frees, and the summary would never go.
        if self._held and self._allowed(now):
            notices.append(self._summary())
        window = self.config.group_window
        for key in [k for k, g in self._groups.items() if now - g.first >= window]:
            group = self._groups.pop(key)
            what, rule, targets = key
            if self._allowed(now):
                notices.append(self._word(what, rule, targets, group.changes))
            else:
                self._held[(rule, what)] += len(group.changes)
                room = HELD_KEYS - len(self._held_keys)
                self._held_keys += [c.incident.key for c in group.changes[: max(room, 0)]]
        return notices

    def next_due(self) -> Optional[float]:
        """When :meth:`due` may next have something to send (None: nothing waits), so that
        a reader waiting for entries wakes in time for it, not a whole wait later."""
        times = [g.first + self.config.group_window for g in self._groups.values()]
        if self._held:
            full = len(self._sent) >= self.config.rate_limit
            times.append(self._sent[0] + self.config.rate_per if full and self._sent else 0.0)
        return min(times) if times else None

    def pending(self) -> int:
        """Changes not yet told (grouping or held back by the rate limit)."""
        return sum(len(g.changes) for g in self._groups.values()) + sum(self._held.values())

    # -- saving and loading ----------------------------------------------------------------

    def dumps(self) -> str:
        """What is not told yet, and the rate limit's memory, as JSON (small: a window's worth)."""
        groups = [
            [list(key[:2]), list(key[2]), group.first, [[c.what, asdict(c.incident), c.at] for c in group.changes]]
            for key, group in self._groups.items()
        ]
        held = [[rule, what, count] for (rule, what), count in self._held.items()]
        return json.dumps({"groups": groups, "sent": list(self._sent), "held": held, "held_keys": self._held_keys})

    def loads(self, text: str) -> None:
        data = json.loads(text)
        self._groups = {}
        for (what, rule), targets, first, changes in data["groups"]:
            group = _Group(first, [Change(w, Incident(**i), at) for w, i, at in changes])
            self._groups[(what, rule, tuple(targets))] = group
        self._sent = deque(data["sent"])
        self._held = Counter({(rule, what): count for rule, what, count in data["held"]})
        self._held_keys = [(k[0], k[1], k[2]) for k in data["held_keys"]]

    # -- the rate limit -------------------------------------------------------------------

    def _allowed(self, now: float) -> bool:
        while self._sent and self._sent[0] <= now - self.config.rate_per:
            self._sent.popleft()
        if len(self._sent) >= self.config.rate_limit:
            return False
        self._sent.append(now)
        return True

    def _summary(self) -> Notice:
        total = sum(self._held.values())
        lines = [f"{count} {what} ({rule})" for (rule, what), count in sorted(self._held.items())]
        keys = tuple(self._held_keys)
        self._held.clear()
        self._held_keys = []
        body = (
            f"{total} more changes were held back by the rate limit "
            f"({self.config.rate_limit} notices per {self.config.rate_per:.0f} s):\n" + "\n".join(lines)
        )
        everyone = tuple(dict.fromkeys(t for targets in self._targets.values() for t in targets))
        return Notice(f"[raptor] {total} more suppressed", body, everyone, keys, "suppressed")

    # -- words ----------------------------------------------------------------------------

    def _word(self, what: str, rule: str, targets: Tuple[str, ...], changes: List[Change]) -> Notice:
        incidents = list({c.incident.key: c.incident for c in changes}.values())
        keys = tuple(i.key for i in incidents)
        label = "RESOLVED " if what == "resolved" else ("REMINDER " if what == "reminded" else "")
        if len(incidents) == 1:
            incident = incidents[0]
            where = printable(incident.host) + (f" {printable(incident.program)}" if incident.program else "")
            title = f"[raptor] {label}{rule}: {where}"
            return Notice(title, self._details(incident, what), targets, keys, what)
        hosts = {i.host for i in incidents}
        title = f"[raptor] {label}{rule}: {len(incidents)} incidents on {len(hosts)} host{'s' * (len(hosts) > 1)}"
        lines = [f"{len(incidents)} incidents of rule {rule} {what}:"]
        for incident in incidents[:LISTED]:
            last = incident.evidence[-1] if incident.evidence else ""
            program = f" {printable(incident.program)}" if incident.program else ""
            lines.append(f"- {printable(incident.host)}{program}: {printable(last)}")
        if len(incidents) > LISTED:
            lines.append(f"... and {len(incidents) - LISTED} more")
        link = self._link(None)
        if link:
            lines.append(f"\nThe fleet: {link}")
        return Notice(title, "\n".join(lines), targets, keys, what)

    def _details(self, incident: Incident, what: str) -> str:
        lines = [
            f"rule: {incident.rule} ({incident.kind})",
            f"host: {printable(incident.host)}",
        ]
        if incident.program:
            other = "other name" if incident.kind == "duplicate" else "program"
            lines.append(f"{other}: {printable(incident.program)}")
        lines.append(f"{what}; open since {_iso(incident.opened)}")
        lines.append("what happened (newest last):")
        lines += [f"  {printable(line)}" for line in incident.evidence]
        link = self._link(incident)
        if link:
            lines.append(f"\nraptor web: {link}")
        return "\n".join(lines)

    def _link(self, incident: Optional[Incident]) -> Optional[str]:
        base = self.config.web_url
        if base is None:
            return None
        if incident is None:
            return base
        if incident.program and incident.kind != "duplicate":
            return base + "?" + urlencode({"view": "process", "host": incident.host, "process": incident.program})
        return base + "?" + urlencode({"view": "host", "host": incident.host})


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
