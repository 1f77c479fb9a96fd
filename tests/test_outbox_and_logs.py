"""Unit: the bounded coalescing outbox, throttled and redacted logging."""

from __future__ import annotations

import io
import logging
import threading
import time

from raptor.events import GroupChange, ProcessStateChange
from raptor.logs import RedactingFilter, Throttle, configure_logging
from raptor.outbox import Outbox


def change(name: str, to_state: str, at: float = 0.0) -> ProcessStateChange:
    return ProcessStateChange(name, name, "STOPPED", to_state, 0, at)


def test_items_come_out_in_order() -> None:
    outbox = Outbox(limit=100)
    items = [change(f"p{i}", "RUNNING") for i in range(10)]
    for item in items:
        outbox.put(item)
    assert outbox.take(4, 0) == items[:4]
    assert outbox.take(100, 0) == items[4:]
    assert outbox.take_resync_request() is None


def test_overflow_coalesces_to_latest_per_process_and_asks_for_resync() -> None:
    outbox = Outbox(limit=10)
    for round_ in range(1000):
        for name in ("a", "b", "c"):
            outbox.put(change(name, "RUNNING" if round_ % 2 else "STOPPED", at=round_))
    outbox.put(GroupChange("c", added=False, received=1))
    assert outbox.pending() <= 10  # memory bounded whatever the number of events
    items = outbox.take(100, 0)
    latest = {i.name: i for i in items if isinstance(i, ProcessStateChange)}
    assert {name: item.received for name, item in latest.items()} == {"a": 999, "b": 999, "c": 999}
    assert isinstance(items[-1], GroupChange)  # the removal stays after the changes it followed
    assert outbox.coalesced > 2900
    assert outbox.take_resync_request() == "outbox coalesced"


def test_many_distinct_processes_do_not_make_put_quadratic() -> None:
    outbox = Outbox(limit=10)
    started = time.perf_counter()
    for i in range(20000):
        outbox.put(change(f"p{i}", "RUNNING"))
    assert outbox.pending() == 20000
    assert time.perf_counter() - started < 5


def test_requeue_puts_items_back_in_front_in_order() -> None:
    outbox = Outbox()
    first, second, third = change("a", "RUNNING"), change("b", "RUNNING"), change("c", "RUNNING")
    outbox.put(third)
    outbox.requeue([first, second])
    assert outbox.take(10, 0) == [first, second, third]


def test_take_wakes_up_on_put_and_on_resync() -> None:
    outbox = Outbox()
    threading.Timer(0.05, outbox.put, args=(change("a", "RUNNING"),)).start()
    started = time.monotonic()
    assert len(outbox.take(10, 5)) == 1
    threading.Timer(0.05, outbox.request_resync, args=("tick",)).start()
    assert outbox.take(10, 5) == []
    assert time.monotonic() - started < 2
    assert outbox.take_resync_request() == "tick"


def test_throttle_logs_once_per_interval_and_counts() -> None:
    now = [0.0]
    stream = io.StringIO()
    logger = logging.getLogger("raptor.test.throttle")
    logger.addHandler(logging.StreamHandler(stream))
    logger.setLevel(logging.INFO)
    throttle = Throttle(logger, interval=60, clock=lambda: now[0])
    for _ in range(5):
        throttle.log("k", logging.WARNING, "down: %s", "x")
    now[0] = 61
    throttle.log("k", logging.WARNING, "down: %s", "x")
    assert stream.getvalue().splitlines() == ["down: x", "down: x (4 similar messages held back)"]
    assert throttle.clear("k") is True
    assert throttle.clear("k") is False


def test_secrets_never_reach_the_log_even_in_tracebacks() -> None:
    stream = io.StringIO()
    configure_logging(stream, "INFO", ["hunter2"])
    log = logging.getLogger("raptor.test.secrets")
    log.warning("url redis://:%s@h", "hunter2")
    try:
        raise RuntimeError("auth hunter2 failed")
    except RuntimeError:
        log.exception("boom")
    text = stream.getvalue()
    assert "hunter2" not in text
    assert "redis://:***@h" in text
    assert "RuntimeError: auth *** failed" in text
    assert RedactingFilter([""]).filter(logging.makeLogRecord({"msg": "x"}))
