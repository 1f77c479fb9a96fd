"""Unit: the bounded coalescing outbox, throttled and redacted logging, the report of
events supervisord discarded (and, with a real supervisord, that report end to end)."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import sys
import threading
import time
import warnings
from typing import Callable, Dict, Iterator, List
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import (
    ListenerSpec,
    LogRecords,
    ProgramSpec,
    RedisServer,
    Supervisords,
    captured_log,
    snapshot_differences,
    velociraptor_names,
    wait_for,
)
from raptor.keys import META_DISCARDED, meta_key
from raptor.logs import RedactingFilter, Throttle, configure_logging, log_uncaught_exceptions, secret_forms
from raptor.publisher.events import GroupChange, ProcessStateChange
from raptor.publisher.listener import LOSS_QUIET, Listener, buffer_size_for
from raptor.publisher.outbox import Outbox
from raptor.publisher.protocol import Envelope


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


# -- every form of a secret is redacted ---------------------------------------------

SECRETS = ["Sup3rPw!@:/$#%21%xQ", "Kl\u20ac\u00ff\"W\u00f6rd'\\Qz /+", "Ab12~-_.Cd"]
ENCODINGS: Dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "quote": quote,
    "quote safe=''": lambda s: quote(s, safe=""),
    "quote_plus": quote_plus,
    "lower-case percent escapes": lambda s: re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(s, safe="")),
    "basic auth header": lambda s: "Authorization: Basic " + base64.b64encode(f"admin:{s}".encode()).decode(),
    "repr": repr,
    "ascii": ascii,
    "json": json.dumps,
    "json non-ascii": lambda s: json.dumps(s, ensure_ascii=False),
    "repr in a dict": lambda s: repr({"k": s, "o": 'it\'s "x"'}),
    "json in a dict": lambda s: json.dumps({"k": s}),
    "repr of repr": lambda s: repr(repr(s)),
    "repr of json": lambda s: repr(json.dumps(s)),
    "json of repr": lambda s: json.dumps(repr(s)),
    "url in an exception repr": lambda s: repr(ValueError(f"<for admin:{quote(s, safe='')}@localhost/RPC2: 401>")),
}


def fragments(secret: str) -> List[str]:
    """The secret's ASCII letter/digit runs: most encodings keep them as they are."""
    return [run for run in re.findall("[A-Za-z0-9]+", secret) if len(run) >= 2]


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_every_form_of_a_secret_is_redacted(secret: str, encoding: str) -> None:
    text = "<<" + ENCODINGS[encoding](secret) + ">>"
    redacted = RedactingFilter([secret], [("admin", secret)]).redact(text)
    assert "***" in redacted
    leftovers = [f for f in fragments(secret) if f in redacted]
    assert not leftovers, redacted
    token = base64.b64encode(f"admin:{secret}".encode()).decode()
    assert token.rstrip("=") not in redacted


def test_secret_forms_is_a_pure_function_of_the_secret() -> None:
    forms = secret_forms("p@ss:/%", "admin")
    assert {"p@ss:/%", "p%40ss%3A/%25", "p%40ss%3A%2F%25", "p%40ss%3a%2f%25"} <= forms
    assert base64.b64encode(b"admin:p@ss:/%").decode() in forms
    assert secret_forms("") == set()
    assert secret_forms("x", "u") == secret_forms("x", "u")


def test_redaction_covers_tracebacks_stack_info_and_bad_arguments() -> None:
    stream = io.StringIO()
    secret = "Sup3rPw!@:/$#%21%xQ"
    configure_logging(stream, "INFO", [], [("admin", secret)])
    log = logging.getLogger("raptor.test.forms")
    try:
        raise RuntimeError(f"<ProtocolError for admin:{quote(secret, safe='')}@localhost/RPC2: 401>")
    except RuntimeError:
        log.exception("rpc failed")
    log.warning("args %s %s", repr(secret))  # noqa: PLE1206 (one argument short: formatting fails)
    log.warning("stack", stack_info=True, extra={"k": secret})
    logging.getLogger("some.library").warning("header %s", base64.b64encode(f"admin:{secret}".encode()).decode())
    text = stream.getvalue()
    assert "Sup3rPw" not in text
    assert "RuntimeError: <ProtocolError for admin:***@localhost/RPC2: 401>" in text
    assert "unformattable arguments" in text
    assert "header ***" in text, "a library's log line goes through the same redaction"


def test_python_warnings_go_through_the_redacting_log() -> None:
    stream = io.StringIO()
    secret = "w4rn-Pw!@:/$#%"
    # Earlier tests captured warnings too, and pytest has since restored showwarning
    # behind logging's back: start from a clean state, as a new process does.
    logging.captureWarnings(False)
    configure_logging(stream, "INFO", [secret])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn(f"connecting with {quote(secret, safe='')}", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
    text = stream.getvalue()
    assert "UserWarning: connecting with ***" in text
    assert "w4rn" not in text


def test_uncaught_exceptions_go_through_the_redacting_log() -> None:
    stream = io.StringIO()
    configure_logging(stream, "INFO", ["hunter2"])
    saved = sys.excepthook, threading.excepthook
    try:
        log_uncaught_exceptions(logging.getLogger("raptor.test.uncaught"))
        try:
            raise ValueError("password hunter2 rejected")
        except ValueError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
        thread = threading.Thread(target=lambda: 1 / 0, name="boom")
        thread.start()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        sys.excepthook, threading.excepthook = saved
    text = stream.getvalue()
    assert "ValueError: password *** rejected" in text
    assert "uncaught exception in thread boom" in text
    assert "ZeroDivisionError" in text
    assert "hunter2" not in text


# -- events discarded by supervisord: how many, and what buffer_size holds them -------


@pytest.fixture
def listener_log() -> Iterator[LogRecords]:
    with captured_log("raptor.listener") as handler:
        yield handler


def tick(serial: int) -> Envelope:
    headers = {"eventname": "TICK_60", "len": "6", "poolserial": str(serial)}
    return Envelope(headers, "when:1")


def test_a_gap_says_how_many_were_lost_and_what_buffer_size_to_set(listener_log: LogRecords) -> None:
    now = [0.0]
    listener = Listener(Outbox(), processes=lambda: 41, monotonic=lambda: now[0])
    for serial in [1, 2, 3, 18, 19, 20, 31, *range(32, 41)]:
        now[0] += 0.001
        listener.handle_event(tick(serial))
    assert listener.discarded_by_supervisord == 14 + 10
    gap_lines = [line for line in listener_log.lines if "discarded" in line]
    assert len(gap_lines) == 1, "later gaps of the same burst are held back"
    assert "discarded 14 events (poolserial 4 to 17)" in gap_lines[0]
    assert "set buffer_size to at least 1024 (the role's rule for 41 processes" in gap_lines[0]

    now[0] += LOSS_QUIET  # the burst is over: the next event sums it up
    listener.handle_event(tick(41))
    summary = listener_log.lines[-1]
    # 10 events delivered from the last gap (31..40) + 24 discarded.
    assert "discarded 24 events in all" in summary
    assert "a buffer_size of at least 34 would have held them" in summary
    assert "the role's rule for 41 processes gives 1024" in summary


def test_without_rpc_the_gap_still_gives_a_lower_bound(listener_log: LogRecords) -> None:
    listener = Listener(Outbox())
    for serial in (1, 9):
        listener.handle_event(tick(serial))
    assert "raise buffer_size by at least 7" in listener_log.lines[-1]
    assert buffer_size_for(1000) == 6144
    assert buffer_size_for(41) == buffer_size_for(0) == 1024


@settings(max_examples=300, deadline=None)
@given(
    buffer_size=st.integers(1, 30),
    arrivals=st.lists(st.integers(0, 12), min_size=1, max_size=120),
)
def test_suggested_buffer_size_would_have_held_the_burst(buffer_size: int, arrivals: List[int]) -> None:
    """supervisord's pool buffer, modelled: per turn, events arrive (the oldest is
    discarded when the buffer is full) and one is dispatched to the listener. The
    summary's suggestion must hold the peak backlog of the same burst unbounded."""
    bounded: List[int] = []
    delivered: List[int] = []
    serial = peak = backlog = 0
    # One event delivered first: a listener cannot tell a loss before its first event.
    for count in [1, *arrivals, *[0] * (sum(arrivals) + 1)]:
        for _ in range(count):
            serial += 1
            if len(bounded) >= buffer_size:
                bounded.pop(0)
            bounded.append(serial)
        backlog += count
        peak = max(peak, backlog)
        if bounded:
            delivered.append(bounded.pop(0))
        backlog = max(0, backlog - 1)
    now = [0.0]
    with captured_log("raptor.listener") as handler:
        listener = Listener(Outbox(), monotonic=lambda: now[0])
        for s in [*delivered, serial + 1]:
            now[0] += LOSS_QUIET if s == serial + 1 else 0.001
            listener.handle_event(tick(s))
    summaries = [line for line in handler.lines if "in all" in line]
    if peak <= buffer_size:
        assert listener.discarded_by_supervisord == 0
        assert not summaries
        return
    assert listener.discarded_by_supervisord == serial - len(delivered)
    assert len(summaries) == 1
    suggested = int(re.search(r"buffer_size of at least (\d+)", summaries[0]).group(1))  # type: ignore[union-attr]
    assert suggested >= peak


@pytest.mark.integration
def test_real_overflow_is_reported_with_a_buffer_size_that_would_have_held_it(
    redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    sup = start_supervisord(
        velociraptor_names(40),
        redis_server.url,
        listener=ListenerSpec(buffer_size=10),
        program=ProgramSpec(group="fleet"),
    )
    wait_for(sup.programs_running, 60, "programs to run")
    # Starting 40 programs already overflows a buffer of 10; a fresh listener (same
    # pool, so poolserials go on) gives the restart below a log of its own.
    restart = sup.ctl("restart", "proc_publisher")
    assert restart.returncode == 0, restart.stdout + restart.stderr
    client = redis_server.client()
    wait_for(lambda: not snapshot_differences(client, sup.hostname, sup), 5, "snapshot after listener restart")
    offset = len(sup.listener_log())
    discarded_before = sup.discarded_events()

    burst = sup.ctl("restart", "fleet:*")
    assert burst.returncode == 0, burst.stdout + burst.stderr
    discarded = sup.discarded_events() - discarded_before
    assert discarded > 0, "the restart did not overflow the buffer: nothing to report"
    needed = sup.listener.buffer_size + discarded  # no backlog exceeded what was held + what was lost

    def own_log() -> str:
        return sup.listener_log()[offset:]

    gap_lines = wait_for(
        lambda: [line for line in own_log().splitlines() if "before this listener saw them" in line],
        10,
        "the listener to report the loss",
    )
    assert len(gap_lines) == 1, gap_lines
    advised = int(re.search(r"set buffer_size to at least (\d+) \(", gap_lines[0]).group(1))  # type: ignore[union-attr]
    assert advised >= needed, gap_lines[0]

    # The first event that comes LOSS_QUIET s after the last loss sums the burst up:
    # ordinary restarts of one program provide it.
    def summary() -> List[str]:
        lines = [line for line in own_log().splitlines() if "events in all" in line]
        if not lines:
            sup.ctl("restart", f"fleet:{sup.programs[0]}")
        return lines

    summaries = wait_for(summary, 30, "the summary of the loss")
    assert len(summaries) == 1, summaries
    assert f"discarded {discarded} events in all" in summaries[0]
    held = int(re.search(r"buffer_size of at least (\d+) would", summaries[0]).group(1))  # type: ignore[union-attr]
    assert held >= needed, summaries[0]
    print(f"MEASURED buffer_size=10, restart of 40: discarded={discarded} advised={advised} held={held}")
    assert client.hget(meta_key(sup.hostname), META_DISCARDED) == str(discarded).encode()
