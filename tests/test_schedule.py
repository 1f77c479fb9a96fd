"""Unit: the sink's schedule, driven by a hand-moved clock."""

from __future__ import annotations

from typing import List, Tuple

from hypothesis import example, given
from hypothesis import strategies as st

from raptor.publisher.schedule import (
    HEARTBEAT,
    MAX_IDLE,
    RESYNC_MAX_WAIT,
    RPC_RETRY_DELAY,
    SETTLED,
    Schedule,
    routine,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(settle_delay: float = 0.5) -> Tuple[Clock, Schedule]:
    clock = Clock()
    return clock, Schedule(clock, settle_delay=settle_delay)


def resynced(schedule: Schedule, clock: Clock, retry: bool = False) -> None:
    reason = schedule.resync_due()
    assert reason is not None
    schedule.resynced(reason, started=clock.now, retry=retry)


def test_the_listener_start_resync_is_due_at_once() -> None:
    clock, schedule = make()
    assert schedule.pending == "listener start"
    assert schedule.resync_due() == "listener start"
    assert schedule.idle_timeout() == 0.0
    resynced(schedule, clock)
    assert schedule.pending is None
    assert schedule.resync_due() is None


def test_the_first_reason_asked_for_is_kept_unless_a_repair_follows_a_routine_one() -> None:
    clock, schedule = make()
    resynced(schedule, clock)
    schedule.request("outbox coalesced")
    schedule.request("Redis reconnected")
    schedule.request("TICK_60")
    assert schedule.resync_due() == "outbox coalesced"
    resynced(schedule, clock)
    # A TICK came while Redis was away: the resync after it is a repair, which reports
    # differences at once (a routine one first confirms them).
    schedule.request("TICK_60")
    assert routine("TICK_60") and not routine("Redis reconnected")
    schedule.request("Redis reconnected", at_once=True)
    assert schedule.resync_due() == "Redis reconnected"


def test_queued_items_go_first_but_not_longer_than_the_max_wait() -> None:
    clock, schedule = make()
    assert schedule.may_resync(queued=0)
    assert not schedule.may_resync(queued=10)
    clock.now += RESYNC_MAX_WAIT - 0.01
    assert not schedule.may_resync(queued=10)
    clock.now += 0.01
    assert schedule.may_resync(queued=10), "overdue: the resync is not starved by a flood"
    resynced(schedule, clock)
    assert not schedule.may_resync(queued=10), "nothing pending: the queue goes first again"


def test_the_wait_counts_from_the_request_not_from_the_last_resync() -> None:
    clock, schedule = make()
    resynced(schedule, clock)
    clock.now += 100
    schedule.may_resync(queued=5)
    schedule.request("TICK_60")
    assert not schedule.may_resync(queued=5)
    clock.now += RESYNC_MAX_WAIT
    assert schedule.may_resync(queued=5)


def test_the_heartbeat_runs_every_second_while_no_resync_is_pending() -> None:
    clock, schedule = make()
    assert not schedule.heartbeat_due(), "a pending resync rewrites the records anyway"
    resynced(schedule, clock)
    assert not schedule.heartbeat_due()
    clock.now += HEARTBEAT
    assert schedule.heartbeat_due()
    assert not schedule.heartbeat_due(), "the next one is a heartbeat away"
    clock.now += HEARTBEAT / 2
    schedule.published()
    clock.now += HEARTBEAT * 0.75
    assert not schedule.heartbeat_due(), "a write that went through proves the records are there"
    clock.now += HEARTBEAT / 4
    assert schedule.heartbeat_due()


def test_a_burst_settles_into_one_resync() -> None:
    clock, schedule = make(settle_delay=0.5)
    resynced(schedule, clock)
    schedule.settle()
    clock.now += 0.3
    schedule.settle()  # the burst goes on: the settle moves
    clock.now += 0.3
    assert schedule.resync_due() is None
    assert abs(schedule.idle_timeout() - 0.2) < 1e-9
    clock.now += 0.2
    assert schedule.resync_due() == SETTLED
    resynced(schedule, clock)
    assert schedule.resync_due() is None


def test_without_supervisord_there_is_no_settle_resync() -> None:
    clock = Clock()
    schedule = Schedule(clock, settle_delay=None)
    schedule.resynced("listener start", started=clock.now, retry=False)
    schedule.settle()
    clock.now += 60
    assert schedule.resync_due() is None


def test_a_resync_without_supervisords_word_is_retried_later() -> None:
    clock, schedule = make()
    started = clock.now
    clock.now += 0.1  # the resync took a while: the retry counts from its start
    schedule.resynced("listener start", started=started, retry=True)
    assert schedule.pending == "listener start"
    clock.now = started + RPC_RETRY_DELAY - 0.01
    assert schedule.resync_due() is None
    schedule.request("TICK_60")
    assert schedule.resync_due() is None, "a new request keeps the retry time"
    clock.now = started + RPC_RETRY_DELAY
    assert schedule.resync_due() == "listener start"


def test_at_once_cancels_the_retry_wait() -> None:
    clock, schedule = make()
    schedule.resynced("listener start", started=clock.now, retry=True)
    schedule.request("Redis reconnected", at_once=True)
    assert schedule.resync_due() == "Redis reconnected", "due at once, and a repair now"


def test_a_settle_can_run_while_an_rpc_retry_waits() -> None:
    clock, schedule = make(settle_delay=0.5)
    schedule.resynced("TICK_60", started=clock.now, retry=True)
    schedule.settle()
    clock.now += 0.5
    assert schedule.resync_due() == SETTLED
    schedule.resynced(SETTLED, started=clock.now, retry=True)
    assert schedule.pending == SETTLED


def test_a_refusal_pauses_upkeep_and_the_idle_wait_respects_it() -> None:
    clock, schedule = make()
    schedule.pause(30.0)
    assert schedule.paused()
    assert schedule.idle_timeout() == MAX_IDLE, "due, but paused: wake up no more than once a second"
    clock.now += 29.5
    assert abs(schedule.idle_timeout() - 0.5) < 1e-9
    clock.now += 0.5
    assert not schedule.paused()
    assert schedule.idle_timeout() == 0.0


ops = st.lists(
    st.tuples(
        st.sampled_from(["advance", "request", "urgent", "settle", "published", "resync", "retry", "pause", "beat"]),
        st.floats(min_value=0.0, max_value=5.0),
    ),
    max_size=40,
)


@given(ops)
@example([("pause", 1.1066186818770565e-12)])  # a wait shorter than the clock's resolution
def test_the_idle_wait_never_sleeps_past_something_due(steps: List[Tuple[str, float]]) -> None:
    clock, schedule = make()
    for op, amount in steps:
        if op == "advance":
            clock.now += amount
        elif op in ("request", "urgent"):
            schedule.request(f"reason {amount}", at_once=op == "urgent")
        elif op == "settle":
            schedule.settle()
        elif op == "published":
            schedule.published()
        elif op in ("resync", "retry") and schedule.resync_due() is not None:
            resynced(schedule, clock, retry=op == "retry")
        elif op == "pause":
            schedule.pause(amount)
        elif op == "beat":
            schedule.heartbeat_due()
        timeout = schedule.idle_timeout()
        assert 0.0 <= timeout <= MAX_IDLE
        if not schedule.paused() and (schedule.resync_due() is not None):
            assert timeout == 0.0
        # Just before the wake-up, still nothing is due (resync_due and paused only read):
        # an instant that, in floating point, still comes before it.
        if timeout > 0 and clock.now + timeout * 0.999 < clock.now + timeout:
            now, clock.now = clock.now, clock.now + timeout * 0.999
            assert schedule.paused() or schedule.resync_due() is None, "something fell due before the wake-up"
            clock.now = now
