"""Unit: event payload parsing and the process-name convention."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raptor.names import UNKNOWN, jsname, parse_proc_name
from raptor.publisher.events import (
    STATE_CODES,
    EventParseError,
    GroupChange,
    OtherEvent,
    ProcessStateChange,
    Tick,
    parse_event,
)


def test_running_event() -> None:
    event = parse_event("PROCESS_STATE_RUNNING", "processname:web groupname:grp from_state:STARTING pid:42", 10.5)
    assert event == ProcessStateChange("web", "grp", "STARTING", "RUNNING", 42, 10.5)


def test_exited_and_starting_events() -> None:
    exited = parse_event("PROCESS_STATE_EXITED", "processname:a groupname:a from_state:RUNNING expected:0 pid:7", 1)
    assert isinstance(exited, ProcessStateChange)
    assert (exited.expected, exited.pid) == (False, 7)
    starting = parse_event("PROCESS_STATE_STARTING", "processname:a groupname:a from_state:BACKOFF tries:2", 1)
    assert isinstance(starting, ProcessStateChange)
    assert (starting.tries, starting.pid) == (2, 0)


def test_group_tick_and_other_events() -> None:
    assert parse_event("PROCESS_GROUP_ADDED", "groupname:g\n", 3) == GroupChange("g", True, 3)
    assert parse_event("PROCESS_GROUP_REMOVED", "groupname:g\n", 3) == GroupChange("g", False, 3)
    assert parse_event("TICK_60", "when:1700000000", 3) == Tick("TICK_60", 1700000000)
    assert parse_event("SUPERVISOR_STATE_CHANGE_RUNNING", "", 3) == OtherEvent("SUPERVISOR_STATE_CHANGE_RUNNING")


def test_names_with_spaces_and_colons() -> None:
    event = parse_event("PROCESS_STATE_STOPPED", "processname:my prog:1 groupname:g x from_state:STOPPING pid:3", 0)
    assert isinstance(event, ProcessStateChange)
    assert (event.name, event.group, event.pid) == ("my prog:1", "g x", 3)


@pytest.mark.parametrize(
    ("eventname", "payload"),
    [
        ("PROCESS_STATE_RUNNING", "not:valid"),
        ("PROCESS_STATE_RUNNING", "garbage"),
        ("PROCESS_STATE_RUNNING", "processname:a groupname:a from_state:NOPE pid:1"),
        ("PROCESS_STATE_RUNNING", "processname:a groupname:a from_state:STARTING pid:x"),
        ("PROCESS_STATE_SLEEPING", "processname:a groupname:a from_state:STARTING"),
        ("PROCESS_GROUP_ADDED", ""),
        ("TICK_60", "when:soon"),
    ],
)
def test_junk_payloads_raise(eventname: str, payload: str) -> None:
    with pytest.raises(EventParseError):
        parse_event(eventname, payload, 0)


_name_chars = st.characters(blacklist_categories=["Cs", "Cc", "Zs", "Zl", "Zp"])
names = st.text(alphabet=_name_chars, min_size=1, max_size=40)


@given(names, names, st.sampled_from(sorted(STATE_CODES)), st.sampled_from(sorted(STATE_CODES)), st.integers(0, 2**31))
def test_state_payload_round_trip(name: str, group: str, from_state: str, to_state: str, pid: int) -> None:
    payload = f"processname:{name} groupname:{group} from_state:{from_state} pid:{pid}"
    event = parse_event(f"PROCESS_STATE_{to_state}", payload, 0)
    assert isinstance(event, ProcessStateChange)
    assert (event.name, event.group, event.from_state, event.to_state, event.pid) == (
        name,
        group,
        from_state,
        to_state,
        pid,
    )


@given(st.text(max_size=200))
def test_parser_never_crashes_on_junk(payload: str) -> None:
    for eventname in ("PROCESS_STATE_RUNNING", "PROCESS_GROUP_REMOVED", "TICK_60", "WHATEVER"):
        with contextlib.suppress(EventParseError):
            parse_event(eventname, payload, 0)


def test_velociraptor_name() -> None:
    parsed = parse_proc_name("node_example-v2-local-f96054b7-web-5003")
    assert parsed == ("node_example", "v2", "local", "f96054b7", "web", 5003)


@pytest.mark.parametrize(
    "name",
    ["plain", "a-b-c-d-e-notaport", "a-b-c-d-e-f-7", "a-b-c-d-5", "a-b-c-d-e--1", "a-b-c-d-e-5__001", "a-b-c-d-e-²"],
)
def test_other_names_fall_back(name: str) -> None:
    assert parse_proc_name(name) == (name, UNKNOWN, UNKNOWN, UNKNOWN, name, 0)


@pytest.mark.parametrize(
    ("port", "number"),
    [("+5000", 5000), ("5_001", 5001), ("\t5002", 5002), ("05003", 5003), ("\uff15\uff10\uff10\uff14", 5004), ("٣", 3)],
)
def test_port_is_what_int_makes_of_it(port: str, number: int) -> None:
    """As vr.common reads it (tests/test_names_vr.py compares with vr.common itself)."""
    assert parse_proc_name(f"app-v1-prod-abcd1234-web-{port}") == ("app", "v1", "prod", "abcd1234", "web", number)


def test_jsname_replaces_dots() -> None:
    assert jsname("app.v1-x.y") == "appdotv1-xdoty"


_part = st.text(alphabet=st.characters(blacklist_characters="-", blacklist_categories=["Cs"]), max_size=12)


@given(_part, _part, _part, _part, _part, st.integers(0, 65535))
def test_six_part_names_round_trip(app: str, version: str, config: str, hash_: str, proc: str, port: int) -> None:
    name = f"{app}-{version}-{config}-{hash_}-{proc}-{port}"
    assert parse_proc_name(name) == (app, version, config, hash_, proc, port)


@given(st.text(max_size=60))
def test_any_name_parses(name: str) -> None:
    parsed = parse_proc_name(name)
    assert isinstance(parsed.port, int)
    if name.count("-") != 5:
        assert (parsed.app_name, parsed.proc_name, parsed.port) == (name, name, 0)
