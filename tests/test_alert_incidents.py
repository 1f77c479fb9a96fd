"""raptor alert's incidents, from scripted sequences of transitions and fleet states: one
incident per (rule, host, program), opened once, reminded, resolved once."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

from raptor.alert.config import Match, Rule
from raptor.alert.incidents import Change, Engine
from raptor.consumer.history import Transition

HOUR = 3600.0


def rule(kind: str, **settings: Any) -> Rule:
    defaults: Dict[str, Any] = {"crash_loop": {"starts": 5, "within": 600.0}, "stale": {"after": 120.0}}
    values = {**defaults.get(kind, {}), **settings}
    match = values.pop("match", Match())
    return Rule(values.pop("name", kind), kind, match, ("ops",), values.pop("remind_every", HOUR), **values)


def t(at: float, to_state: Optional[str], program: str = "api", from_state: str = "?", **more: Any) -> Transition:
    event = "PROCESS_GROUP_REMOVED" if to_state is None else f"PROCESS_STATE_{to_state}"
    return Transition(f"{int(at * 1000)}-0", at, program, program, program, event, from_state, to_state, **more)


def summary(changes: List[Change]) -> List[Tuple[str, str, str, str]]:
    return [(c.what, c.incident.rule, c.incident.host, c.incident.program) for c in changes]


def feed(engine: Engine, host: str, *transitions: Transition) -> List[Change]:
    changes: List[Change] = []
    for transition in transitions:
        changes += engine.transition(host, None, transition)
    return changes


def test_a_fatal_process_is_one_incident_reminded_then_resolved() -> None:
    engine = Engine([rule("fatal")])
    opened = feed(engine, "web1", t(0, "STARTING"), t(1, "BACKOFF"), t(2, "STARTING"), t(3, "BACKOFF"), t(4, "FATAL"))
    assert summary(opened) == [("opened", "fatal", "web1", "api")]
    assert opened[0].incident.evidence[-1] == "api: ? -> FATAL"
    assert summary(engine.tick(4 + HOUR - 1)) == []
    assert summary(engine.tick(4 + HOUR)) == [("reminded", "fatal", "web1", "api")]
    assert summary(engine.tick(4 + HOUR + 10)) == []  # the next one an hour later
    assert feed(engine, "web1", t(5000, "STARTING"), t(5001, "RUNNING")) == []
    assert summary(engine.tick(5001 + 59)) == []  # RUNNING, but not for resolve_after yet
    assert summary(engine.tick(5001 + 60)) == [("resolved", "fatal", "web1", "api")]
    assert engine.open == {}


def test_a_process_that_dies_again_after_each_start_is_one_incident() -> None:
    engine = Engine([rule("unexpected_exit", resolve_after=60.0)])
    changes: List[Change] = []
    for n in range(10):  # RUNNING for 5 s, then exit 3, then restarted: every 10 s
        at = n * 10.0
        changes += feed(engine, "web1", t(at, "STARTING"), t(at + 1, "RUNNING"), t(at + 6, "EXITED", expected=False))
        changes += engine.tick(at + 9)
    assert summary(changes) == [("opened", "unexpected_exit", "web1", "api")]
    assert len(engine.open[("unexpected_exit", "web1", "api")].evidence) == 10  # the last ten kept


def test_restart_all_of_200_programs_opens_nothing() -> None:
    rules = [rule("fatal"), rule("unexpected_exit"), rule("crash_loop"), rule("not_running", after=60.0)]
    engine = Engine(rules)
    changes: List[Change] = []
    for n in range(200):
        program = f"p{n}"
        for i, state in enumerate(("STOPPING", "STOPPED", "STARTING", "RUNNING")):
            changes += engine.transition("web1", None, t(1 + i * 0.5, state, program, expected=True))
    changes += engine.tick(120)
    assert changes == [] and engine.open == {}


def run(at: float, exit_expected: Optional[bool] = False) -> Tuple[Transition, ...]:
    """A start that reaches RUNNING and exits 5 s later."""
    return t(at, "STARTING"), t(at + 1, "RUNNING"), t(at + 5, "EXITED", "api", "RUNNING", expected=exit_expected)


def test_a_crash_loop_opens_at_the_nth_crash_and_resolves_after_running_for_the_window() -> None:
    engine = Engine([rule("crash_loop", starts=3, within=600.0)])
    assert feed(engine, "web1", *run(0), *run(10)) == []
    opened = feed(engine, "web1", *run(20))  # the third crash in 10 minutes
    assert summary(opened) == [("opened", "crash_loop", "web1", "api")]
    assert opened[0].incident.evidence == ["api: RUNNING -> EXITED (unexpected) (3 crashes in 600 s)"]
    assert feed(engine, "web1", t(40, "STARTING"), t(41, "RUNNING")) == []  # the same incident
    assert summary(engine.tick(41 + 599)) == []
    assert summary(engine.tick(41 + 600)) == [("resolved", "crash_loop", "web1", "api")]


def test_crashes_spread_wider_than_the_window_are_no_loop() -> None:
    engine = Engine([rule("crash_loop", starts=3, within=600.0)])
    assert feed(engine, "web1", *run(0), *run(400), *run(800), *run(1200)) == []


def test_only_an_exit_supervisord_did_not_expect_is_an_unexpected_exit() -> None:
    engine = Engine([rule("unexpected_exit")])
    assert feed(engine, "web1", t(0, "EXITED", expected=True, exitstatus=0)) == []
    opened = feed(engine, "web1", t(1, "EXITED", expected=False, exitstatus=3))
    assert summary(opened) == [("opened", "unexpected_exit", "web1", "api")]
    assert opened[0].incident.evidence == ["api: ? -> EXITED (unexpected), exit status 3"]


def test_not_running_waits_for_its_time_and_a_stop_on_purpose_never_counts() -> None:
    engine = Engine([rule("not_running", after=300.0)])
    feed(engine, "web1", t(0, "RUNNING"), t(100, "EXITED", expected=False), t(101, "BACKOFF"))
    feed(engine, "web1", t(100, "STOPPED", program="batch"))  # someone stopped it
    assert engine.tick(100 + 299) == []  # BACKOFF since 101 s: not yet
    assert summary(engine.tick(101 + 300)) == [("opened", "not_running", "web1", "api")]
    assert engine.tick(101 + 400) == []  # open already
    assert summary(feed(engine, "web1", t(600, "STOPPED"))) == [("resolved", "not_running", "web1", "api")]


def test_a_removed_process_resolves_its_incidents() -> None:
    engine = Engine([rule("fatal")])
    feed(engine, "web1", t(0, "FATAL"))
    assert summary(feed(engine, "web1", t(5, None))) == [("resolved", "fatal", "web1", "api")]


def test_rules_watch_only_what_their_filters_name() -> None:
    engine = Engine([rule("fatal", match=Match(hosts=("web*",), programs=("api*",)))])
    assert feed(engine, "db1", t(0, "FATAL")) == []
    assert feed(engine, "web1", t(0, "FATAL", program="worker")) == []
    assert summary(feed(engine, "web2", t(0, "FATAL"))) == [("opened", "fatal", "web2", "api")]


def fleet(*hosts: Dict[str, Any], duplicates: Tuple[Tuple[str, str], ...] = ()) -> Dict[str, Any]:
    return {"hosts": list(hosts), "duplicates": [list(pair) for pair in duplicates]}


def test_a_stale_host_opens_once_and_resolves_when_refreshed_or_gone() -> None:
    engine = Engine([rule("stale")])
    assert engine.hosts(fleet({"host": "web1", "age_s": 30}), 0) == []
    assert summary(engine.hosts(fleet({"host": "web1", "age_s": 130}), 100)) == [("opened", "stale", "web1", "")]
    assert engine.hosts(fleet({"host": "web1", "age_s": 190}), 160) == []
    assert summary(engine.hosts(fleet({"host": "web1", "age_s": 2}), 200)) == [("resolved", "stale", "web1", "")]
    engine.hosts(fleet({"host": "web2", "age_s": 500}), 300)
    assert summary(engine.hosts(fleet(), 400)) == [("resolved", "stale", "web2", "")]


def test_a_duplicate_pair_is_one_incident() -> None:
    engine = Engine([rule("duplicate")])
    report = fleet({"host": "db1"}, {"host": "db1.internal"}, duplicates=(("db1.internal", "db1"),))
    assert summary(engine.hosts(report, 0)) == [("opened", "duplicate", "db1", "db1.internal")]
    assert engine.hosts(report, 60) == []
    assert summary(engine.hosts(fleet({"host": "db1"}), 120)) == [("resolved", "duplicate", "db1", "db1.internal")]


def test_discarded_events_open_while_they_grow_and_resolve_after_a_quiet_hour() -> None:
    engine = Engine([rule("discarded")])

    def host(count: int) -> Dict[str, Any]:
        return fleet({"host": "web1", "listener": {"discarded_by_supervisord": count}})

    assert engine.hosts(host(0), 0) == []
    opened = engine.hosts(host(7), 60)
    assert summary(opened) == [("opened", "discarded", "web1", "")]
    assert opened[0].incident.evidence == ["supervisord discarded 7 events (7 since the listener started)"]
    assert engine.hosts(host(7), 60 + HOUR - 1) == []
    assert summary(engine.hosts(host(7), 60 + HOUR)) == [("resolved", "discarded", "web1", "")]
    assert summary(engine.hosts(host(9), 60 + HOUR + 5)) == [("opened", "discarded", "web1", "")]
    assert summary(engine.hosts(host(0), 60 + HOUR + 10)) == [("resolved", "discarded", "web1", "")]  # restarted


def test_the_state_saved_piecemeal_is_what_another_engine_goes_on_from() -> None:
    rules = [rule("crash_loop", starts=3, within=600.0), rule("not_running", after=300.0), rule("fatal")]
    first = Engine(rules)
    feed(first, "web1", t(0, "RUNNING", program="quiet"))
    feed(first, "web1", *run(0), t(6, "STARTING"), t(7, "BACKOFF"), t(20, "FATAL"))
    procs, incidents = first.changed_records()
    assert json_keys(procs) == {'["web1", "api"]'}  # the quiet RUNNING process is not saved
    assert [k for k, v in incidents.items() if v] == ['["fatal", "web1", "api"]']
    assert first.changed_records()[0] == {}  # nothing new since

    second = Engine(rules)
    second.load({k: v for k, v in procs.items() if v}, {k: v for k, v in incidents.items() if v})
    assert set(second.open) == {("fatal", "web1", "api")}
    # The crashes carried over (the third makes a loop), and a state that should not last is timed.
    assert summary(feed(second, "web1", *run(25))) == [("opened", "crash_loop", "web1", "api")]
    assert summary(second.tick(30 + 300)) == [("opened", "not_running", "web1", "api")]


def json_keys(records: Dict[str, Optional[str]]) -> set:  # type: ignore[type-arg]
    return {key for key, value in records.items() if value is not None}


def test_quiet_processes_are_forgotten_and_a_backlog_does_not_remind_at_once() -> None:
    engine = Engine([rule("fatal"), rule("crash_loop", starts=3, within=600.0)])
    feed(engine, "web1", t(0, "STARTING", program="quiet"), t(1, "RUNNING", program="quiet"))
    engine.changed_records()
    engine.tick(1000)  # its start is out of every window, and it is RUNNING: nothing to watch
    assert engine.changed_records()[0] == {'["web1", "quiet"]': None}
    # An old FATAL read late (a backlog): opened now, so its first reminder is an hour from now.
    opened = engine.transition("web1", None, t(10, "FATAL"), seen=5000.0)
    assert summary(opened) == [("opened", "fatal", "web1", "api")]
    assert engine.tick(5001, seen=5001) == []
    assert summary(engine.tick(5000 + HOUR, seen=5000 + HOUR)) == [("reminded", "fatal", "web1", "api")]


def test_discarded_counts_carry_over_a_takeover() -> None:
    def host(count: int) -> Dict[str, Any]:
        return fleet({"host": "web1", "listener": {"discarded_by_supervisord": count}})

    first = Engine([rule("discarded")])
    first.hosts(host(7), 0)
    assert first.changed_counters() is not None and first.changed_counters() is None  # saved once
    first.hosts(host(7), 15)
    assert first.changed_counters() is None  # nothing new: not written again
    saved = json.dumps({"web1": [7, 0.0]})
    second = Engine([rule("discarded")])
    second.load({}, {}, saved)
    assert second.hosts(host(7), 30) == []  # the same 7: not new growth
    assert summary(second.hosts(host(9), 45)) == [("opened", "discarded", "web1", "")]


def test_a_program_that_cannot_start_is_one_incident_fatal() -> None:
    """Issue 25, finding 2. With supervisord's default startretries (3), a program that
    cannot start goes STARTING -> BACKOFF four times, then FATAL: one notice, fatal. Its
    four BACKOFFs are under crash_loop's default 5 (a larger startretries is a loop:
    test_a_long_starting_backoff_loop_is_a_crash_loop_at_the_nth_backoff_within_the_window)."""
    engine = Engine([rule("fatal"), rule("unexpected_exit"), rule("crash_loop")])  # 5 in 10 minutes
    retries: List[Transition] = []
    for n in range(4):
        retries += [t(n * 5, "STARTING", "broken"), t(n * 5 + 1, "BACKOFF", "broken", "STARTING")]
    assert feed(engine, "web1", *retries) == []
    assert summary(feed(engine, "web1", t(20, "FATAL", "broken", "BACKOFF"))) == [("opened", "fatal", "web1", "broken")]


def test_a_long_starting_backoff_loop_is_a_crash_loop_at_the_nth_backoff_within_the_window() -> None:
    """Issue 25 (review): a program with a large startretries that never starts goes
    STARTING <-> BACKOFF for hours. Each BACKOFF counts (a STARTING never does): the
    loop opens at the N-th BACKOFF within M, once, however long it goes on. Four
    BACKOFFs, all that supervisord's default startretries=3 makes, are no loop."""
    engine = Engine([rule("crash_loop", starts=5, within=600.0)])

    def retries(first: int, last: int, every: float = 10.0) -> List[Transition]:
        return [x for n in range(first, last) for x in (t(n * every, "STARTING"), t(n * every + 1, "BACKOFF"))]

    assert feed(engine, "web1", *retries(0, 4)) == []
    opened = feed(engine, "web1", *retries(4, 5))
    assert summary(opened) == [("opened", "crash_loop", "web1", "api")]
    assert opened[0].incident.evidence == ["api: ? -> BACKOFF (5 crashes in 600 s)"]
    assert feed(engine, "web1", *retries(5, 1000)) == []  # hours of it: the same incident
    # BACKOFFs spread wider than the window are no loop.
    assert feed(Engine([rule("crash_loop", starts=5, within=600.0)]), "web2", *retries(0, 20, every=200.0)) == []


def test_an_autorestart_loop_of_expected_exits_is_a_crash_loop() -> None:
    """Issue 25 (review): autorestart=true and a program that exits 0 after 2 s: supervisord
    expects each exit and restarts it for ever. An endless restart is a loop: each EXITED
    counts, expected or not (and it is no unexpected_exit)."""
    engine = Engine([rule("crash_loop", starts=3, within=600.0), rule("unexpected_exit")])
    assert feed(engine, "web1", *run(0, exit_expected=True), *run(10, exit_expected=True)) == []
    opened = feed(engine, "web1", *run(20, exit_expected=True))
    assert summary(opened) == [("opened", "crash_loop", "web1", "api")]
    assert opened[0].incident.evidence == ["api: RUNNING -> EXITED (expected) (3 crashes in 600 s)"]
    assert feed(engine, "web1", *[x for at in range(30, 3000, 10) for x in run(at, exit_expected=True)]) == []


def test_not_running_fires_during_a_long_backoff_loop() -> None:
    """Issue 25 (review): STARTING <-> BACKOFF for hours is not RUNNING for hours; the time
    counts from when the process left RUNNING, not from its last change of state. A start
    after a stop on purpose counts from that start."""
    engine = Engine([rule("not_running", after=300.0)])
    feed(engine, "web1", t(0, "RUNNING"), t(100, "EXITED", expected=False))
    changes: List[Change] = []
    for n in range(40):  # a retry every 10 s from 101 on
        feed(engine, "web1", t(101 + n * 10, "STARTING"), t(102 + n * 10, "BACKOFF"))
        changes += engine.tick(103 + n * 10)
        if changes:
            break
    assert summary(changes) == [("opened", "not_running", "web1", "api")]
    assert changes[0].at == 403.0  # the first tick 300 s after the EXITED
    assert changes[0].incident.evidence == ["BACKOFF, not RUNNING for 303 s"]
    feed(engine, "web1", t(500, "STOPPED", program="batch"), t(1000, "STARTING", program="batch"))
    feed(engine, "web1", t(1001, "BACKOFF", program="batch"))
    assert engine.tick(1299) == [] and summary(engine.tick(1300)) == [("opened", "not_running", "web1", "batch")]
