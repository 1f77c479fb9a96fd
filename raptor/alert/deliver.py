"""Sending notices through Apprise, target by target, with retries: a delivery that fails
is tried again with backoff (5 s doubling to 5 minutes), and each failure is logged —
naming the target, never its URL — until it goes through. Nothing is dropped.

The queue is this process's; the alerter keeps what must survive a restart (the
incidents) in Redis.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, List, Mapping, Optional, Tuple

from .config import Target, apprise_silenced
from .notices import Notice

log = logging.getLogger("raptor.alert")

FIRST_RETRY = 5.0
LAST_RETRY = 300.0
Send = Callable[[Target, str, str], bool]  # (target, title, body) -> delivered


@dataclass(order=True)
class _Delivery:
    due: float
    order: int
    notice: Notice = field(compare=False)
    target: str = field(compare=False)
    attempts: int = field(default=0, compare=False)
    ident: str = field(default="", compare=False)


@dataclass(frozen=True)
class Outcome:
    notice: Notice
    target: str
    delivered: bool
    attempts: int
    retry_in: float = 0.0
    ident: str = ""  # what the submitter named it (the alerter: its outbox entry)


class Deliverer:
    """Notices in (:meth:`submit`), deliveries out (:meth:`run_due`), each target on its own."""

    def __init__(self, targets: Mapping[str, Target], send: Send) -> None:
        self.targets = dict(targets)
        self.send = send
        self._queue: List[_Delivery] = []
        self._order = itertools.count()

    def submit(self, notice: Notice, now: float, *, target: Optional[str] = None, ident: str = "") -> None:
        """To each of its targets, or to *target* only."""
        for name in notice.targets if target is None else (target,):
            heapq.heappush(self._queue, _Delivery(now, next(self._order), notice, name, ident=ident))

    def pending(self) -> int:
        return len(self._queue)

    def clear(self) -> None:
        """Forget every queued delivery (an alerter that is no longer the leader)."""
        self._queue = []

    def next_due(self) -> float:
        """When the next delivery is due (inf when none is queued)."""
        return self._queue[0].due if self._queue else float("inf")

    def run_due(self, now: float, budget: float = 0.0) -> List[Outcome]:
        """Send what is due; with a *budget* (s), stop starting sends once it is spent."""
        outcomes: List[Outcome] = []
        started = time.monotonic()
        while self._queue and self._queue[0].due <= now:
            if budget and time.monotonic() - started >= budget:
                break
            delivery = heapq.heappop(self._queue)
            delivery.attempts += 1
            target = self.targets.get(delivery.target)
            delivered = False
            if target is not None:
                try:
                    delivered = self.send(target, delivery.notice.title, delivery.notice.body)
                except Exception as exc:  # a sender that raises must not lose the notice
                    log.warning("sending to %s raised %s", delivery.target, type(exc).__name__)
            if delivered:
                outcomes.append(
                    Outcome(delivery.notice, delivery.target, True, delivery.attempts, ident=delivery.ident)
                )
                continue
            wait = min(LAST_RETRY, FIRST_RETRY * 2 ** (delivery.attempts - 1))
            log.warning(
                "could not deliver %r to %s (attempt %d); retrying in %.0f s",
                delivery.notice.title,
                delivery.target,
                delivery.attempts,
                wait,
            )
            delivery.due = now + wait
            heapq.heappush(self._queue, delivery)
            outcome = Outcome(delivery.notice, delivery.target, False, delivery.attempts, wait, delivery.ident)
            outcomes.append(outcome)
        return outcomes


def apprise_send(target: Target, title: str, body: str) -> bool:
    """One notice to one target through Apprise, its logger silenced (it quotes URLs)."""
    import apprise  # noqa: PLC0415 (the alert extra)

    notifier = apprise.Apprise()
    with apprise_silenced():
        if not notifier.add(target.url):
            return False
        return bool(notifier.notify(title=title, body=body))


__all__: Tuple[str, ...] = ("Deliverer", "Outcome", "apprise_send")
