"""Unit: the sink's plans, made without Redis."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from hypothesis import given
from hypothesis import strategies as st

from raptor import __version__
from raptor.messages import message_from_entry
from raptor.publisher.events import STATE_CODES, GroupChange, ProcessStateChange
from raptor.publisher.outbox import Item
from raptor.publisher.plan import Removal, Transition, meta_record, number, plan_batch, plan_resync
from raptor.publisher.process_table import ProcessInfo, ProcessTable, blank_info, normalize_info

HOST, RUN = "h", "run1"


def info(name: str, statename: str, pid: int = 0, group: Optional[str] = None) -> ProcessInfo:
    return normalize_info({"name": name, "group": group or name, "statename": statename, "pid": pid})


def table_of(*infos: ProcessInfo) -> ProcessTable:
    table = ProcessTable()
    table.replace(infos)
    return table


def change(name: str, from_state: str, to_state: str, pid: int = 0, group: str = "", at: float = 1000.0) -> Item:
    return ProcessStateChange(name, group or name, from_state, to_state, pid, at)


def test_a_batch_numbers_one_message_per_change_after_the_current_seq() -> None:
    items = [
        change("a", "STOPPED", "STARTING"),
        change("a", "STARTING", "RUNNING", 7),
        change("b", "RUNNING", "EXITED"),
    ]
    plan = plan_batch(items, ProcessTable(), host=HOST, run_id=RUN, seq=41)
    assert [(m["name"], m["event"], m["seq"]) for m in plan.messages] == [
        ("a", "PROCESS_STATE_STARTING", 42),
        ("a", "PROCESS_STATE_RUNNING", 43),
        ("b", "PROCESS_STATE_EXITED", 44),
    ]
    assert plan.seq == 44
    assert [m["from_state"] for m in plan.messages] == ["STOPPED", "STARTING", "RUNNING"]
    assert not any(m["resync"] for m in plan.messages)
    assert {name: i["statename"] for name, i in plan.updated.items()} == {"a": "RUNNING", "b": "EXITED"}
    assert plan.updated["a"]["pid"] == 7
    assert plan.removed == {}
    assert plan.updated and not plan.group_added


def test_a_batch_derives_from_the_table_without_changing_it() -> None:
    known = info("a", "RUNNING", 5)
    known["logfile"] = "/var/log/a.log"
    table = table_of(known)
    plan = plan_batch([change("a", "RUNNING", "STOPPING", 5)], table, host=HOST, run_id=RUN, seq=0)
    assert plan.updated["a"]["logfile"] == "/var/log/a.log", "what events do not carry is kept"
    assert table.get("a") == known


def test_a_removed_group_removes_its_members_from_the_table_and_the_batch() -> None:
    table = table_of(info("g", "RUNNING", 1), info("g_1", "RUNNING", 2, "g"), info("other", "RUNNING", 3))
    items = [change("g_0", "STOPPED", "STARTING", group="g"), GroupChange("g", added=False, received=2000.0)]
    plan = plan_batch(items, table, host=HOST, run_id=RUN, seq=0)
    assert [(m["event"], m["name"], m["seq"]) for m in plan.messages] == [
        ("PROCESS_STATE_STARTING", "g_0", 1),
        ("PROCESS_GROUP_REMOVED", "g", 2),
        ("PROCESS_GROUP_REMOVED", "g_0", 3),
        ("PROCESS_GROUP_REMOVED", "g_1", 4),
    ]
    assert plan.removed == {"g": "g", "g_0": "g", "g_1": "g"}
    assert plan.updated == {}
    assert plan.messages[1]["payload_headers"] == {"groupname": "g"}


def test_a_process_back_after_its_group_was_removed_starts_blank() -> None:
    table = table_of(info("a", "RUNNING", 1))
    items = [GroupChange("a", added=False, received=1.0), change("a", "STOPPED", "STARTING")]
    plan = plan_batch(items, table, host=HOST, run_id=RUN, seq=0)
    assert plan.removed == {}
    assert plan.updated["a"]["statename"] == "STARTING"


def test_an_added_group_says_nothing_and_wants_the_settle_resync() -> None:
    plan = plan_batch([GroupChange("g", added=True, received=1.0)], ProcessTable(), host=HOST, run_id=RUN, seq=3)
    assert plan.messages == ()
    assert plan.seq == 3
    assert plan.group_added


names = st.sampled_from(["a", "b", "node_example-v2-local-f96054b7-web-5003", "café"])
states = st.sampled_from(sorted(STATE_CODES))
items = st.lists(
    st.one_of(
        st.builds(change, names, states, states, st.integers(0, 99), st.just(""), st.floats(0, 2e9)),
        st.builds(GroupChange, names, st.booleans(), st.floats(0, 2e9)),
    ),
    max_size=30,
)


@given(items, st.integers(0, 10**6))
def test_batch_plans_are_numbered_contiguously_and_made_again_identically(batch: List[Item], seq: int) -> None:
    table = table_of(info("a", "RUNNING", 1), info("b", "STOPPED"))
    before = table.entries()
    plan = plan_batch(batch, table, host=HOST, run_id=RUN, seq=seq)
    assert [m["seq"] for m in plan.messages] == list(range(seq + 1, plan.seq + 1))
    transitions = [i for i in batch if isinstance(i, ProcessStateChange)]
    states_said = [m for m in plan.messages if m["event"] != "PROCESS_GROUP_REMOVED"]
    assert len(states_said) == len(transitions), "one message per state change"
    assert [m["event"] for m in states_said] == [f"PROCESS_STATE_{i.to_state}" for i in transitions]
    assert not set(plan.updated) & set(plan.removed)
    assert table.entries() == before
    assert plan_batch(batch, table, host=HOST, run_id=RUN, seq=seq) == plan, "a batch sent again keeps its seqs"


def test_a_resync_corrects_what_differs_and_removes_what_is_gone() -> None:
    stored = {
        "same": info("same", "RUNNING", 1),
        "changed": info("changed", "RUNNING", 2),
        "gone": info("gone", "RUNNING", 3),
    }
    truth = [info("same", "RUNNING", 1), info("changed", "RUNNING", 9), info("new", "STOPPED")]
    plan = plan_resync(truth, stored, {}, host=HOST, run_id=RUN, seq=10, now=1.7e9)
    assert list(plan.target) == ["same", "changed", "new"]
    assert [(m["name"], m["event"], m["seq"]) for m in plan.messages] == [
        ("changed", "PROCESS_STATE_RUNNING", 11),
        ("new", "PROCESS_STATE_STOPPED", 12),
        ("gone", "PROCESS_GROUP_REMOVED", 13),
    ]
    assert [m.get("from_state") for m in plan.messages[:2]] == ["RUNNING", None]
    assert all(m["resync"] for m in plan.messages)
    assert plan.messages[2]["time"] == "2023-11-14T22:13:20+00:00"
    assert plan.seq == 13


def test_a_resync_without_supervisord_declares_nothing_gone() -> None:
    stored = {"old": info("old", "RUNNING", 5)}
    known = {"b": info("b", "STARTING")}
    plan = plan_resync(None, stored, known, host=HOST, run_id=RUN, seq=0, now=0.0)
    assert set(plan.target) == {"old", "b"}
    assert [(m["name"], m["event"]) for m in plan.messages] == [("b", "PROCESS_STATE_STARTING")]


def test_a_resync_that_finds_nothing_to_correct_uses_no_seq() -> None:
    stored = {"a": info("a", "RUNNING", 1)}
    plan = plan_resync([info("a", "RUNNING", 1)], stored, {}, host=HOST, run_id=RUN, seq=7, now=0.0)
    assert plan.messages == () and plan.seq == 7


def test_number_is_the_one_place_messages_get_their_seq() -> None:
    said = [Transition(blank_info("a", "a"), "RUNNING", expected=False), Removal("b", "g", 0.0)]
    numbered = number(said, host=HOST, run_id=RUN, seq=0, resync=True)
    assert [(m["event"], m["seq"], m["run_id"], m["resync"]) for m in numbered.messages] == [
        ("PROCESS_STATE_STOPPED", 1, RUN, True),
        ("PROCESS_GROUP_REMOVED", 2, RUN, True),
    ]
    # Each message's history entry, in the same order, with what the channel does not carry.
    assert [(e["event"], e["seq"], e["expected"], e["group"]) for e in numbered.entries] == [
        ("PROCESS_STATE_STOPPED", "1", "0", ""),
        ("PROCESS_GROUP_REMOVED", "2", "", "g"),
    ]
    for message, entry in zip(numbered.messages, numbered.entries):
        restored = message_from_entry(entry)
        for field in ("logfile", "stdout_logfile", "stderr_logfile"):
            message.pop(field, None)  # type: ignore[misc]
        assert {k: v for k, v in restored.items() if k != "expected"} == message


def test_events_older_than_the_truth_are_left_out() -> None:
    """Issue 13: a resync stored RUNNING (supervisord's truth at start); the events
    supervisord queued before it (STARTING, then RUNNING) come after. Published, they
    would send the process back in time."""
    table = table_of(info("a", "RUNNING", 42), info("b", "RUNNING", 7))
    queued = [
        change("a", "STOPPED", "STARTING"),
        change("a", "STARTING", "RUNNING", 42),
        change("b", "RUNNING", "EXITED", 6),  # b's previous run, before pid 7
        change("b", "EXITED", "STARTING"),
        change("b", "STARTING", "RUNNING", 7),
        change("a", "RUNNING", "STOPPING", 42),  # a new transition, after the truth
    ]
    plan = plan_batch(queued, table, host=HOST, run_id=RUN, seq=10, ordered=True)
    assert [(m["name"], m["event"], m["from_state"]) for m in plan.messages] == [
        ("a", "PROCESS_STATE_STOPPING", "RUNNING")
    ]
    assert plan.behind == 5 and plan.seq == 11
    # Without supervisord's truth (no RPC, or it failed), an event is the best word there is.
    unordered = plan_batch(queued, table, host=HOST, run_id=RUN, seq=10)
    assert len(unordered.messages) == 6 and unordered.behind == 0


def test_meta_record() -> None:
    extra: Dict[str, Any] = {"events": 3, "supervisord_id": "x"}
    meta = meta_record(run_id=RUN, seq=4, now=12.5, started=10.0, processes=2, pid=99, refreshed=False, extra=extra)
    assert meta == {"run_id": RUN, "seq": 4, "updated": "12.500", "version": __version__, "pid": 99,
                    "started": "10.000", "processes": 2, "events": 3, "supervisord_id": "x"}  # fmt: skip
    refreshed = meta_record(run_id=RUN, seq=4, now=12.5, started=10.0, processes=2, pid=99, refreshed=True, extra={})
    assert refreshed["refreshed"] == refreshed["updated"] == "12.500"


def test_a_routine_resync_reports_a_difference_only_when_it_sees_it_twice() -> None:
    """supervisord may hold events older than its answer: a first sighting is held back
    (the snapshot keeps the stored state); seen again with nothing in between, it is reported."""
    stored = {"a": info("a", "RUNNING", 5), "b": info("b", "RUNNING", 6), "gone": info("gone", "RUNNING", 8)}
    truth = [info("a", "STARTING", 0), info("b", "RUNNING", 6), info("c", "RUNNING", 9)]
    first = plan_resync(truth, stored, {}, host=HOST, run_id=RUN, seq=0, now=0.0, confirm=True)
    assert [(m["name"], m["event"]) for m in first.messages] == [("gone", "PROCESS_GROUP_REMOVED")]
    assert first.target["a"]["statename"] == "RUNNING" and "c" not in first.target
    assert set(first.held) == set(first.unconfirmed) == {"a", "c"}
    second = plan_resync(
        truth, stored, {}, host=HOST, run_id=RUN, seq=1, now=0.5, confirm=True, unconfirmed=first.unconfirmed
    )
    assert [(m["name"], m.get("statename"), m.get("from_state")) for m in second.messages] == [
        ("a", "STARTING", "RUNNING"),
        ("c", "RUNNING", None),
        ("gone", None, None),  # still stored here: reported again
    ]
    assert second.held == {}
    # The events arrived meanwhile and moved the stored state: a new difference, held again.
    moved = {**stored, "a": info("a", "STOPPED", 0)}
    third = plan_resync(
        truth, moved, {}, host=HOST, run_id=RUN, seq=1, now=0.5, confirm=True, unconfirmed=first.unconfirmed
    )
    assert [m["name"] for m in third.messages] == ["c", "gone"] and set(third.held) == {"a"}
    # A repair (after a loss) reports at once.
    repair = plan_resync(truth, stored, {}, host=HOST, run_id=RUN, seq=0, now=0.0)
    assert [m["name"] for m in repair.messages] == ["a", "c", "gone"] and repair.held == {}


def test_nothing_is_confirmed_while_supervisord_cannot_deliver_events_to_the_listener() -> None:
    """At start, supervisord holds the programs' events until the listener is RUNNING."""
    truth = [info("a", "RUNNING", 5), info("proc_publisher", "STARTING", 0)]
    kwargs: Dict[str, Any] = {"host": HOST, "run_id": RUN, "now": 0.0, "confirm": True, "listener": "proc_publisher"}
    first = plan_resync(truth, {}, {}, seq=0, **kwargs)
    assert first.messages == () and set(first.held) == {"a", "proc_publisher"} and first.unconfirmed == {}
    again = plan_resync(truth, {}, {}, seq=0, unconfirmed=first.held, **kwargs)
    assert again.messages == (), "a sighting while the listener could not receive events confirms nothing"
    running = [info("a", "RUNNING", 5), info("proc_publisher", "RUNNING", 3)]
    seen = plan_resync(running, {}, {}, seq=0, **kwargs)
    assert seen.messages == () and set(seen.unconfirmed) == {"a", "proc_publisher"}
    confirmed = plan_resync(running, {}, {}, seq=0, unconfirmed=seen.unconfirmed, **kwargs)
    assert sorted(m["name"] for m in confirmed.messages) == ["a", "proc_publisher"]


def test_nothing_is_confirmed_while_events_were_still_arriving() -> None:
    """A sighting made while the listener's input was not empty after supervisord
    answered (caught_up=False) neither confirms nor counts as a first sighting."""
    truth = [info("a", "RUNNING", 5)]
    stored = {"a": info("a", "STARTING", 5)}
    kwargs: Dict[str, Any] = {"host": HOST, "run_id": RUN, "now": 0.0, "confirm": True}
    first = plan_resync(truth, stored, {}, seq=0, caught_up=False, **kwargs)
    assert first.messages == () and set(first.held) == {"a"} and first.unconfirmed == {}
    quiet = plan_resync(truth, stored, {}, seq=0, unconfirmed={"a": (stored["a"], truth[0])}, caught_up=False, **kwargs)
    assert quiet.messages == (), "a second sighting while events were still arriving confirms nothing"
    assert quiet.unconfirmed == {}
    confirmed = plan_resync(truth, stored, {}, seq=0, unconfirmed={"a": (stored["a"], truth[0])}, **kwargs)
    assert [m["statename"] for m in confirmed.messages] == ["RUNNING"]


def test_log_paths_come_from_supervisords_last_answer_whatever_the_resync_held_back() -> None:
    """Issue 25, finding 1: no event carries the log paths. A routine resync holds a
    process's state back (new, or in another state than stored), never its paths: the
    table learns them from the answer, every entry derived from an event gets them, and
    a state held back is stored with them."""
    paths = {"logfile": "/l/a.out", "stdout_logfile": "/l/a.out", "stderr_logfile": "/l/a.err"}
    truth = [{**info("a", "STARTING"), **paths}, {**info("b", "RUNNING", 6), **paths}]
    stored = {"b": info("b", "STOPPED")}  # derived from events: no paths
    plan = plan_resync(truth, stored, {}, host=HOST, run_id=RUN, seq=0, now=0.0, confirm=True)
    assert set(plan.held) == {"a", "b"} and "a" not in plan.target
    assert plan.target["b"]["statename"] == "STOPPED" and plan.target["b"]["stderr_logfile"] == "/l/a.err"
    table = table_of(*plan.target.values())
    table.learn(truth)
    started = [
        change("a", "STOPPED", "STARTING"),
        change("a", "STARTING", "RUNNING", 5),
        change("c", "STOPPED", "STARTING"),
    ]
    batch = plan_batch(started, table, host=HOST, run_id=RUN, seq=0)
    assert [{k: m[k] for k in paths} for m in batch.messages[:2]] == [paths, paths]
    assert batch.messages[2]["logfile"] == "", "a process supervisord did not list has none"
