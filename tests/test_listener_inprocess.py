"""The listener's seams driven in-process: ``listener.run`` and ``Listener`` on
in-memory streams, as supervisord's eventlistener protocol frames them (the header
line, ``len`` characters of payload; answers ``READY`` and ``RESULT 2\\nOK``)."""

from __future__ import annotations

import io
import logging
import os
import threading
from typing import Iterator, List, Mapping, Optional, TextIO

import pytest

from harness import Collector, RedisServer, stored_snapshot, wait_for
from raptor.keys import meta_key
from raptor.publisher.events import GroupChange, ProcessStateChange
from raptor.publisher.listener import Listener, run
from raptor.publisher.outbox import Outbox
from raptor.publisher.protocol import OK, READY, EventListenerProtocol

ACK = OK + READY


def frame(eventname: str, payload: str, poolserial: int) -> str:
    """One event as supervisord writes it; ``len`` counts characters (Python 3 supervisord)."""
    header = (
        f"ver:3.0 server:supervisor serial:{poolserial} pool:proc_publisher poolserial:{poolserial} "
        f"eventname:{eventname} len:{len(payload)}\n"
    )
    return header + payload


def state(to_state: str, name: str, from_state: str, poolserial: int, pid: Optional[int] = None) -> str:
    payload = f"processname:{name} groupname:{name} from_state:{from_state}"
    if pid is not None:
        payload += f" pid:{pid}"
    return frame(f"PROCESS_STATE_{to_state}", payload, poolserial)


def text_in(data: str) -> TextIO:
    """UTF-8 bytes read as listener.main reads its stdin."""
    return io.TextIOWrapper(io.BytesIO(data.encode("utf-8")), encoding="utf-8", newline="\n")


def environ(redis_server: Optional[RedisServer], **more: str) -> Mapping[str, str]:
    env = {"SUPERVISOR_ENABLED": "1", "HOSTNAME": "h"}
    if redis_server is not None:
        env["REDIS_URL"] = redis_server.url
    env.update(more)
    return env


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """run() configures logging for the process: give the next tests theirs back."""
    raptor, root = logging.getLogger("raptor"), logging.getLogger()
    saved = (raptor.handlers[:], raptor.level, raptor.propagate, root.handlers[:])
    yield
    raptor.handlers[:], raptor.level, raptor.propagate, root.handlers[:] = saved
    logging.captureWarnings(False)


class Running:
    """``run()`` in a thread, on a pipe as stdin that the test writes events to."""

    def __init__(self, env: Mapping[str, str]) -> None:
        read_end, write_end = os.pipe()
        self._stdin = io.TextIOWrapper(io.FileIO(read_end, "rb"), encoding="utf-8", newline="\n")
        self._supervisord = io.TextIOWrapper(io.FileIO(write_end, "wb"), encoding="utf-8", newline="\n")
        self.stdout, self.stderr = io.StringIO(), io.StringIO()
        self.code: List[int] = []
        self._thread = threading.Thread(
            target=lambda: self.code.append(run(self._stdin, self.stdout, self.stderr, env)), daemon=True
        )
        self._thread.start()

    def send(self, *frames: str) -> None:
        self._supervisord.write("".join(frames))
        self._supervisord.flush()

    def close(self, timeout: float) -> int:
        """Close stdin (supervisord goes away) and wait for run() to return."""
        self._supervisord.close()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"run() still running {timeout} s after its stdin closed"
        self._stdin.close()
        return self.code[0]


def test_events_are_acknowledged_with_protocol_tokens_only_and_reach_redis(
    redis_server: RedisServer, collector: Collector
) -> None:
    listener = Running(environ(redis_server))
    try:
        listener.send(state("STARTING", "café", "STOPPED", 1), state("RUNNING", "café", "STARTING", 2, pid=4242))
        wait_for(lambda: listener.stdout.getvalue().count(ACK) == 2, 5, "two acknowledgements")
        # Published while the listener runs, not only when it stops.
        wait_for(lambda: len(collector.snapshot()) >= 2, 5, "the two transitions on the channel")
        listener.send(
            frame("PROCESS_STATE_RUNNING", "this is not a payload", 3),  # junk: acknowledged, ignored
            state("EXITED", "web", "RUNNING", 4, pid=7),
        )
        wait_for(lambda: len(collector.snapshot()) >= 3, 5, "the third transition")
    finally:
        code = listener.close(10)
    assert code == 0
    assert listener.stdout.getvalue() == READY + ACK * 4, "stdout carries protocol tokens and nothing else"
    messages = collector.snapshot()
    assert [(m["name"], m["event"], m["seq"]) for m in messages] == [
        ("café", "PROCESS_STATE_STARTING", 1),
        ("café", "PROCESS_STATE_RUNNING", 2),
        ("web", "PROCESS_STATE_EXITED", 3),
    ]
    assert messages[1]["pid"] == 4242 and messages[1]["from_state"] == "STARTING"
    assert {m["host"] for m in messages} == {"h"}
    snapshot = stored_snapshot(redis_server.client(), "h")
    assert {name: entry["statename"] for name, entry in snapshot.items()} == {"café": "RUNNING", "web": "EXITED"}
    log = listener.stderr.getvalue()
    assert "SUPERVISOR_SERVER_URL is not set" in log
    assert "ignoring malformed event" in log


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SUPERVISOR_ENABLED": "1", "HOSTNAME": "h"}, "REDIS_URL"),
        ({"SUPERVISOR_ENABLED": "1", "HOSTNAME": "h", "REDIS_URL": "http://nope"}, "REDIS_URL"),
        ({"HOSTNAME": "h", "REDIS_URL": "redis://127.0.0.1:1/0"}, "SUPERVISOR_ENABLED"),
    ],
)
def test_bad_configuration_is_one_line_on_stderr_and_exit_2(env: Mapping[str, str], variable: str) -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    assert run(text_in(state("RUNNING", "a", "STARTING", 1)), stdout, stderr, env) == 2
    assert stdout.getvalue() == "", "not even READY: supervisord must not take it for a listener"
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("proc_publisher: ") and variable in lines[0]


def test_a_password_in_a_bad_redis_url_is_not_shown() -> None:
    stderr = io.StringIO()
    env = {"SUPERVISOR_ENABLED": "1", "HOSTNAME": "h", "REDIS_URL": "redis://u:s3cret-pw@127.0.0.1:notaport/0"}
    assert run(text_in(""), io.StringIO(), stderr, env) == 2
    assert "REDIS_URL is malformed" in stderr.getvalue()
    assert "s3cret-pw" not in stderr.getvalue()


def test_end_of_input_ends_the_run_cleanly(redis_server: RedisServer) -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    done: List[int] = []
    thread = threading.Thread(
        target=lambda: done.append(run(text_in(""), stdout, stderr, environ(redis_server))), daemon=True
    )
    thread.start()
    thread.join(10)
    assert done == [0], f"run() did not return 0 within 10 s of an empty stdin: {stderr.getvalue()}"
    assert stdout.getvalue() == READY
    assert "stopped after 0 events" in stderr.getvalue()
    # The sink's first pass (the start resync) ran before it stopped.
    assert redis_server.client().exists(meta_key("h"))


def test_a_payload_cut_short_by_end_of_input_is_not_acknowledged(redis_server: RedisServer) -> None:
    stdout = io.StringIO()
    cut = state("RUNNING", "a", "STARTING", 1)[:-5]
    assert run(text_in(cut), stdout, io.StringIO(), environ(redis_server)) == 0
    assert stdout.getvalue() == READY


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_listener_turns_framed_events_into_queued_work() -> None:
    """Listener behind the protocol: each kind of event becomes what the sink expects."""
    events = "".join(
        [
            state("STARTING", "café", "STOPPED", 1),
            state("RUNNING", "café", "STARTING", 2, pid=31),
            frame("PROCESS_GROUP_ADDED", "groupname:g", 3),
            frame("PROCESS_GROUP_REMOVED", "groupname:g", 4),
            "not a header line\n",
            frame("TICK_60", "when:1700000000", 5),
            frame("SUPERVISOR_STATE_CHANGE_RUNNING", "", 6),
        ]
    )
    outbox, clock, stdout = Outbox(), Clock(), io.StringIO()
    listener = Listener(outbox, clock=clock, monotonic=clock)
    EventListenerProtocol(text_in(events), stdout).serve(listener.handle_event)
    assert stdout.getvalue() == READY + ACK * 7
    assert listener.events == 6
    assert outbox.take(100, 0) == [
        ProcessStateChange("café", "café", "STOPPED", "STARTING", 0, clock.now, None, None),
        ProcessStateChange("café", "café", "STARTING", "RUNNING", 31, clock.now, None, None),
        GroupChange("g", added=True, received=clock.now),
        GroupChange("g", added=False, received=clock.now),
    ]
    assert outbox.take_resync_request() == "TICK_60"
    assert listener.discarded_by_supervisord == 0


def test_the_listener_asks_for_a_resync_when_supervisord_discarded_events() -> None:
    events = state("STARTING", "a", "STOPPED", 10) + state("RUNNING", "a", "STARTING", 14, pid=3)
    outbox, clock, stdout = Outbox(), Clock(), io.StringIO()
    listener = Listener(outbox, clock=clock, monotonic=clock)
    EventListenerProtocol(text_in(events), stdout).serve(listener.handle_event)
    assert stdout.getvalue() == READY + ACK * 2
    assert listener.discarded_by_supervisord == 3
    assert outbox.take_resync_request() == "events discarded by supervisord"
    assert len(outbox.take(100, 0)) == 2
