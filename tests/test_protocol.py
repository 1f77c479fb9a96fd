"""Unit: eventlistener framing, on in-memory streams."""

from __future__ import annotations

import io
from typing import List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raptor.protocol import OK, READY, Envelope, EventListenerProtocol, ProtocolError, parse_header


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
