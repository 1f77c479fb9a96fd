"""Eventlistener framing: unit tests on in-memory streams, and the real console script over pipes."""

from __future__ import annotations

import io
import os
import subprocess
from typing import List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness import BIN, RedisServer, stored_snapshot, wait_for
from raptor.publisher.protocol import (
    OK,
    READY,
    Envelope,
    EventListenerProtocol,
    ProtocolError,
    announced_length,
    parse_header,
)


def frame(eventname: str, payload: str, poolserial: int = 1) -> str:
    header = f"ver:3.0 server:supervisor serial:{poolserial} pool:p poolserial:{poolserial} eventname:{eventname}"
    return f"{header} len:{len(payload)}\n{payload}"


def serve(stdin_text: str, handler=None) -> tuple[List[Envelope], str]:
    seen: List[Envelope] = []
    stdout = io.StringIO()
    protocol = EventListenerProtocol(io.StringIO(stdin_text, newline="\n"), stdout)
    protocol.serve(handler or seen.append)
    return seen, stdout.getvalue()


def test_header_parsing() -> None:
    headers = parse_header("ver:3.0 server:supervisor serial:21 pool:listener poolserial:10 eventname:TICK_5 len:15\n")
    assert headers["eventname"] == "TICK_5"
    assert headers["len"] == "15"
    assert Envelope(headers, "").poolserial == 10


@pytest.mark.parametrize(
    "line",
    ["garbage\n", "ver:3.0 eventname:X\n", "eventname:X len:abc\n", "len:3\n", ":x eventname:X len:1\n"],
)
def test_junk_headers_are_rejected(line: str) -> None:
    with pytest.raises(ProtocolError):
        parse_header(line)


def test_non_ascii_payload_length_is_in_characters() -> None:
    payload = "processname:café-日本-wëb groupname:café from_state:STOPPED tries:0"
    assert len(payload.encode()) != len(payload)
    seen, out = serve(frame("PROCESS_STATE_STARTING", payload) + frame("TICK_60", "when:1", 2))
    assert [e.payload for e in seen] == [payload, "when:1"]
    assert out == READY + (OK + READY) * 2


def test_payload_with_carriage_return_keeps_its_length() -> None:
    payload = "type:x\r\ndata\r"
    seen, _ = serve(frame("REMOTE_COMMUNICATION", payload) + frame("TICK_60", "when:1", 2))
    assert [e.payload for e in seen] == [payload, "when:1"]


def test_junk_line_is_acknowledged_and_reading_goes_on() -> None:
    seen, out = serve("hello there\n" + frame("TICK_60", "when:1"))
    assert [e.eventname for e in seen] == ["TICK_60"]
    assert out == READY + (OK + READY) * 2


def test_handler_exception_is_still_acknowledged() -> None:
    def boom(envelope: Envelope) -> None:
        raise RuntimeError("bad")

    _, out = serve(frame("TICK_60", "when:1"), boom)
    assert out == READY + OK + READY


def test_eof_in_the_middle_of_a_payload_ends_cleanly() -> None:
    seen, out = serve("ver:3.0 eventname:TICK_60 len:50\nwhen:1")
    assert seen == []
    assert out == READY


def test_stop_requested_acknowledges_the_event_in_hand_then_stops() -> None:
    stdout = io.StringIO()
    protocol = EventListenerProtocol(io.StringIO(frame("TICK_60", "when:1") * 2), stdout)

    def handler(envelope: Envelope) -> None:
        protocol.stop_requested = True

    protocol.serve(handler)
    assert stdout.getvalue() == READY + OK


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=60), max_size=8))
def test_any_payloads_round_trip(payloads: List[str]) -> None:
    text = "".join(frame("PROCESS_COMMUNICATION_STDOUT", p, i + 1) for i, p in enumerate(payloads))
    seen, out = serve(text)
    assert [e.payload for e in seen] == payloads
    assert out == READY + (OK + READY) * len(payloads)


@pytest.mark.parametrize(
    "header",
    [
        "ver:3.0 server:supervisor serial:7 pool:p poolserial:7 len:{n}\n",  # no eventname
        "ver:3.0 junk eventname:TICK_60 len:{n}\n",  # a token without ':'
        ":x eventname:TICK_60 len:{n}\n",
    ],
)
def test_malformed_header_with_a_valid_len_consumes_its_payload_and_is_answered_once(header: str) -> None:
    payload = "processname:a groupname:a from_state:STARTING\nexpected:1 pid:2\n"
    seen, out = serve(header.format(n=len(payload)) + payload + frame("TICK_60", "when:1", 8))
    assert [e.eventname for e in seen] == ["TICK_60"]
    assert out == READY + (OK + READY) * 2


def test_announced_length_is_read_from_any_header_line() -> None:
    assert announced_length("ver:3.0 len:12\n") == 12
    assert announced_length("junk len:3 more junk\n") == 3
    assert announced_length("eventname:X len:abc\n") is None
    assert announced_length("eventname:X len:²\n") is None  # isdigit() but not int()
    assert announced_length("no length here\n") is None


def test_non_ascii_digits_are_not_numbers() -> None:
    with pytest.raises(ProtocolError):
        parse_header("eventname:X len:²\n")
    assert Envelope({"eventname": "X", "len": "0", "poolserial": "²"}, "").poolserial is None


def test_eof_inside_the_payload_of_a_malformed_frame_ends_cleanly() -> None:
    seen, out = serve("ver:3.0 len:50\nshort")
    assert seen == []
    assert out == READY


@pytest.mark.integration
def test_real_publisher_answers_each_malformed_frame_exactly_once(redis_server: RedisServer) -> None:
    """The console script over pipes: one answer per frame, however broken the frame."""
    payload = "processname:a groupname:a from_state:STARTING pid:1\nprocessname:b groupname:b pid:2\n"
    frames = [
        f"ver:3.0 server:supervisor serial:1 pool:p poolserial:1 len:{len(payload)}\n{payload}",
        f"ver:3.0 junk eventname:PROCESS_STATE_RUNNING len:{len(payload)}\n{payload}",
        "eventname:PROCESS_STATE_RUNNING len:x\n",
        frame("PROCESS_STATE_RUNNING", "processname:c groupname:c from_state:STARTING pid:3", 4),
    ]
    env = {"PATH": "/usr/bin:/bin", "SUPERVISOR_ENABLED": "1", "REDIS_URL": redis_server.url, "HOSTNAME": "h1"}
    result = subprocess.run(
        [str(BIN / "proc_publisher")],
        input="".join(frames),
        capture_output=True,
        text=True,
        timeout=20,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == READY + (OK + READY) * len(frames)
    assert result.stderr.count("not a supervisord event header") == 3, result.stderr
    stored = wait_for(lambda: stored_snapshot(redis_server.client(), "h1"), 5, "the snapshot")
    assert set(stored) == {"c"}, "nothing from the skipped payloads was taken for an event"


def test_at_rest_only_while_waiting_for_a_header_with_nothing_in_the_pipe() -> None:
    """What the sink checks before it trusts that supervisord held no event."""
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "r", newline="\n") as stdin, os.fdopen(write_fd, "w") as feed:
        protocol = EventListenerProtocol(stdin, io.StringIO())
        assert protocol.at_rest() is None, "not waiting for a header: an event is in hand"
        protocol.idle = True  # as read() sets it while blocked on the next header
        assert protocol.at_rest() == 0
        feed.write(frame("TICK_60", "when:1"))
        feed.flush()
        assert protocol.at_rest() is None, "an event waits in the pipe"
        assert protocol.read() is not None
        protocol.idle = True
        assert protocol.at_rest() == 1
