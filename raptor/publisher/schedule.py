"""When the sink resyncs, checks on Redis, and waits: all its timing in one place.

A resync is *pending* with one reason (the first one asked for wins) until one
goes through. It is *due* at once, unless the last one could not ask supervisord
(then RPC_RETRY_DELAY later), but what is queued is published first, for at most
RESYNC_MAX_WAIT. Without a pending resync, a *settle* resync follows each burst
once it has been quiet SETTLE_DELAY, and a *heartbeat* checks every HEARTBEAT that
Redis still holds this host's records. After Redis refused an upkeep command for
lack of a permission, all of this is *paused*.

No I/O and no threads: the clock is injected, so tests drive it by hand.
"""

from __future__ import annotations

from typing import Callable, Optional

# Quiet time after a burst before one getAllProcessInfo() refreshes the details
# events do not carry (exit status, pids of STARTING processes, log paths).
SETTLE_DELAY = 0.5
RPC_RETRY_DELAY = 2.0
# While idle, check this often that Redis still holds this host's records: an idle
# listener must notice a Redis restart, flush or eviction as fast as a busy one.
HEARTBEAT = 1.0
# A requested resync waits for the queue to drain (it then corrects what was
# published), but no longer than this under a sustained flood of events.
RESYNC_MAX_WAIT = 2.0
# The longest the sink waits for work without looking at the schedule again.
MAX_IDLE = 1.0
SETTLED = "burst settled"
BEHIND = "events older than the state published"
START = "listener start"


def routine(reason: str) -> bool:
    """Whether a resync for *reason* is a routine check, which confirms a difference
    before reporting it (:func:`raptor.publisher.plan.plan_resync`), rather than a
    repair after something was lost (events discarded, Redis away or emptied)."""
    return reason in (START, SETTLED, BEHIND) or reason.startswith("TICK_")


AT_ONCE = float("-inf")


class Schedule:
    def __init__(
        self,
        clock: Callable[[], float],
        *,
        settle_delay: Optional[float] = SETTLE_DELAY,
    ) -> None:
        """*settle_delay* None: no settle resyncs (there is no supervisord to ask)."""
        self._clock = clock
        self._settle_delay = settle_delay
        self._reason: Optional[str] = START
        self._resync_at = AT_ONCE
        self._waiting_since: Optional[float] = None
        self._settle_at: Optional[float] = None
        self._heartbeat_at = AT_ONCE
        self._paused_until = AT_ONCE

    @property
    def pending(self) -> Optional[str]:
        """The reason of the pending resync, if one is."""
        return self._reason

    def request(self, reason: str, *, at_once: bool = False) -> None:
        """Ask for a resync. A pending one keeps its reason, unless it is routine and
        this one a repair (:func:`routine`: a repair reports differences at once);
        *at_once* also cancels its wait for an RPC retry (Redis came back, a record was
        repaired)."""
        if self._reason is None or (routine(self._reason) and not routine(reason)):
            self._reason = reason
        if at_once:
            self._resync_at = AT_ONCE

    def settle(self) -> None:
        """A burst (or a new group) wants one resync once it has been quiet a while."""
        if self._settle_delay is not None:
            self._settle_at = self._clock() + self._settle_delay

    def published(self) -> None:
        """A write went through: Redis holds the records, the heartbeat can wait."""
        self._heartbeat_at = self._clock() + HEARTBEAT

    def may_resync(self, queued: int) -> bool:
        """Whether upkeep may run with *queued* items waiting: not before they are
        published (the resync then corrects them), unless a resync has been pending
        RESYNC_MAX_WAIT."""
        now = self._clock()
        if self._reason is None:
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = now
        overdue = self._waiting_since is not None and now - self._waiting_since >= RESYNC_MAX_WAIT
        return not queued or overdue

    def heartbeat_due(self) -> bool:
        """Whether to check now that Redis still holds this host's records (never while
        a resync is pending: it rewrites them); the next check is then HEARTBEAT away."""
        now = self._clock()
        if self._reason is not None or now < self._heartbeat_at:
            return False
        self._heartbeat_at = now + HEARTBEAT
        return True

    def resync_due(self) -> Optional[str]:
        """The reason of the resync to run now, if one is due."""
        now = self._clock()
        if self._reason is not None and now >= self._resync_at:
            return self._reason
        if self._settle_at is not None and now >= self._settle_at:
            return SETTLED
        return None

    def resynced(self, reason: str, *, started: float, retry: bool) -> None:
        """The resync for *reason*, started at *started*, went through. With *retry*
        (it could not ask supervisord, the only authority), it stays pending and is
        due again RPC_RETRY_DELAY after it started."""
        self._waiting_since = None
        self._heartbeat_at = self._clock() + HEARTBEAT
        self._settle_at = None
        if retry:
            self._reason = reason
            self._resync_at = started + RPC_RETRY_DELAY
        else:
            self._reason = None

    def pause(self, seconds: float) -> None:
        """Redis refused an upkeep command: no repair, heartbeat or resync for *seconds*."""
        self._paused_until = self._clock() + seconds

    def paused(self) -> bool:
        return self._clock() < self._paused_until

    def idle_timeout(self) -> float:
        """How long the sink may wait for work before something here is due."""
        now = self._clock()
        upkeep = [self._heartbeat_at]
        if self._settle_at is not None:
            upkeep.append(self._settle_at)
        if self._reason is not None:
            upkeep.append(self._resync_at)
        deadlines = [now + MAX_IDLE] + [max(deadline, self._paused_until) for deadline in upkeep]
        return max(0.0, min(deadlines) - now)
