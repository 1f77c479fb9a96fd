"""Unit: message format (Velociraptor's contract), derived process entries."""

from __future__ import annotations

import json

from raptor.messages import encode, iso_utc, removal_message, state_message
from raptor.publisher.events import ProcessStateChange
from raptor.publisher.process_table import apply_change, blank_info, describe, normalize_info, same_state

CONTRACT_FIELDS = {
    "event", "host", "id", "name", "group", "jsname", "app_name", "version", "config_name", "hash",
    "proc_name", "port", "statename", "state", "pid", "exitstatus", "description", "spawnerr", "now",
    "start_time", "stop_time", "logfile", "stdout_logfile", "stderr_logfile",
}  # fmt: skip


def change(to_state: str, from_state: str, pid: int = 0, at: float = 1_700_000_000.0) -> ProcessStateChange:
    name = "node_example-v2-local-f96054b7-web-5003"
    return ProcessStateChange(name, name, from_state, to_state, pid, at)


def test_state_message_has_the_contract_fields_and_types() -> None:
    info = apply_change(
        apply_change(None, change("STARTING", "STOPPED")), change("RUNNING", "STARTING", 4242, 1.7e9 + 1)
    )
    message = state_message("web1", info, event="PROCESS_STATE_RUNNING", from_state="STARTING", seq=7, run_id="r1")
    assert message.keys() >= CONTRACT_FIELDS
    assert message["id"] == "web1-node_example-v2-local-f96054b7-web-5003"
    assert message["jsname"] == message["name"]
    assert (message["app_name"], message["version"], message["config_name"]) == ("node_example", "v2", "local")
    assert (message["hash"], message["proc_name"], message["port"]) == ("f96054b7", "web", 5003)
    assert (message["statename"], message["state"], message["pid"]) == ("RUNNING", 20, 4242)
    assert message["start_time"] == "2023-11-14T22:13:20+00:00"
    assert message["now"] == "2023-11-14T22:13:21+00:00"
    assert message["stop_time"] is None
    assert message["description"] == "pid 4242, uptime 0:00:01"
    assert (message["from_state"], message["seq"], message["run_id"], message["resync"]) == ("STARTING", 7, "r1", False)
    for key in ("pid", "state", "exitstatus", "port"):
        assert type(message[key]) is int
    assert json.loads(encode(message)) == message


def test_removal_message() -> None:
    message = removal_message("web1", "a-b-c-d-e-80", "a-b-c-d-e-80", now=1.7e9, seq=3, run_id="r")
    assert message["event"] == "PROCESS_GROUP_REMOVED"
    assert message["id"] == "web1-a-b-c-d-e-80"
    assert message["payload_headers"] == {"groupname": "a-b-c-d-e-80"}
    assert message["payload_data"] == ""
    assert message["time"] == "2023-11-14T22:13:20+00:00"
    assert message["port"] == 80


def test_non_ascii_is_kept_as_is_in_json() -> None:
    info = blank_info("café", "café")
    text = encode(state_message("h", info, event="PROCESS_STATE_STOPPED", from_state=None, seq=1, run_id="r"))
    assert "café" in text


def test_iso_utc_zero_is_null() -> None:
    assert iso_utc(0) is None
    assert iso_utc(None) is None


def test_derived_entries_follow_supervisor() -> None:
    started = apply_change(None, change("STARTING", "STOPPED", at=100))
    assert (started["start"], started["pid"], started["statename"]) == (100, 0, "STARTING")
    running = apply_change(started, change("RUNNING", "STARTING", 55, at=101))
    assert (running["start"], running["pid"], running["state"]) == (100, 55, 20)
    stopping = apply_change(running, change("STOPPING", "RUNNING", 55, at=200))
    stopped = apply_change(stopping, change("STOPPED", "STOPPING", 55, at=201))
    assert (stopped["pid"], stopped["stop"], stopped["start"]) == (0, 201, 100)
    backoff = apply_change(started, change("BACKOFF", "STARTING", at=102))
    assert backoff["description"] == "Exited too quickly (process log may have details)"
    fatal = apply_change(backoff, change("FATAL", "BACKOFF", at=103))
    assert fatal["statename"] == "FATAL"
    assert fatal["spawnerr"] == backoff["spawnerr"]


def test_describe_matches_supervisor_wording() -> None:
    info = blank_info("x", "x")
    assert describe(info) == "Not started"
    info.update(statename="FATAL", state=200, spawnerr="")
    assert describe(info) == 'unknown error (try "tail x")'


def test_normalize_and_same_state() -> None:
    raw = {"name": "x", "group": "x", "statename": "RUNNING", "state": 20, "pid": 5, "start": 1, "now": 2}
    info = normalize_info(raw)
    assert info["description"] == "pid 5, uptime 0:00:01"  # not given: computed as supervisord would
    assert same_state(info, {**info, "pid": 0})
    assert not same_state(info, {**info, "pid": 6})
    assert not same_state(info, {**info, "statename": "STOPPED"})
