"""``raptor history`` and the RESTARTS column: the analysis exactly (raptor.consumer.history,
no Redis), then the commands against a real redis-server filled as the publisher fills it."""

from __future__ import annotations

import io
import json
from typing import Any, Dict, List, Optional, Tuple

import pytest
from rich.console import Console

from harness import RedisServer
from raptor import keys
from raptor.consumer import cli
from raptor.consumer.cli import format_line, main
from raptor.consumer.fleet import Fleet
from raptor.consumer.history import Transition, analyze, process_label, report
from raptor.consumer.text import json_text, printable
from raptor.consumer.watch import render
from raptor.messages import history_entry, message_from_entry
from raptor.publisher.process_table import blank_info
from tests.test_stream_follow import FakePublisher

SINCE, UNTIL = 1000.0, 2000.0


def t(at: float, process: str, from_state: Optional[str], to_state: Optional[str], **extra: Any) -> Transition:
    group, _, name = process.rpartition(":")
    group = group or name
    event = f"PROCESS_STATE_{to_state}" if to_state else "PROCESS_GROUP_REMOVED"
    return Transition(f"{int(at * 1000)}-0", at, process, name, group, event, from_state, to_state, **extra)


# A restart by hand, a crash with automatic restart, a crash loop into FATAL, a start by
# hand after FATAL, an expected exit and its restart.
WEB = [
    t(1100, "web", "RUNNING", "STOPPING", pid=10),
    t(1102, "web", "STOPPING", "STOPPED"),
    t(1103, "web", "STOPPED", "STARTING"),  # restart 1 (supervisorctl restart)
    t(1104, "web", "STARTING", "RUNNING", pid=11),
    t(1200, "web", "RUNNING", "EXITED", exitstatus=1, expected=False),  # crash 1
    t(1201, "web", "EXITED", "STARTING"),  # restart 2
    t(1202, "web", "STARTING", "BACKOFF"),  # crash 2
    t(1205, "web", "BACKOFF", "STARTING"),  # restart 3
    t(1206, "web", "STARTING", "BACKOFF"),  # crash 3
    t(1210, "web", "BACKOFF", "STARTING"),  # restart 4
    t(1211, "web", "STARTING", "BACKOFF"),  # crash 4
    t(1215, "web", "BACKOFF", "FATAL"),  # crash 5
    t(1500, "web", "FATAL", "STARTING"),  # restart 5 (a start by hand)
    t(1501, "web", "STARTING", "RUNNING", pid=12),
    t(1800, "web", "RUNNING", "EXITED", exitstatus=0, expected=True),  # an expected exit: no crash
    t(1801, "web", "EXITED", "STARTING"),  # restart 6
    t(1802, "web", "STARTING", "RUNNING", pid=13),
]
# First seen at its first start (not a restart; nothing known of it before), stopped again until the window's end.
WORKER = [
    t(1300, "workers:worker_00", "STOPPED", "STARTING"),
    t(1301, "workers:worker_00", "STARTING", "RUNNING", pid=20),
    t(1400, "workers:worker_00", "RUNNING", "STOPPING", pid=20),
    t(1401, "workers:worker_00", "STOPPING", "STOPPED"),
]
# Stopped, then removed: no time counted after the removal.
OLD = [
    t(1600, "old", "RUNNING", "STOPPING", pid=30),
    t(1601, "old", "STOPPING", "STOPPED"),
    t(1602, "old", None, None),
]
# A resync entry (nothing known of before): an exit supervisord said nothing of.
RESYNCED = [
    t(1700, "resynced", None, "EXITED", exitstatus=2, resync=True),
]
# Clock skew: an entry stamped before the window, one after it.
SKEWED = [
    t(900, "skewed", "RUNNING", "STOPPED"),
    t(1950, "skewed", "STOPPED", "STARTING"),
    t(2100, "skewed", "STARTING", "RUNNING", pid=40),
]


def interleaved() -> List[Transition]:
    return sorted(WEB + WORKER + OLD + RESYNCED + SKEWED, key=lambda x: (max(x.at, SINCE), x.entry_id))


def test_the_analysis_counts_exactly() -> None:
    summaries = analyze(interleaved(), SINCE, UNTIL)
    got = {p: (s.transitions, s.restarts, s.unexpected_exits, s.backoffs, s.fatals, s.crashes, s.not_running_s,
               s.state) for p, s in summaries.items()}  # fmt: skip
    assert got == {
        # down 1100-1104 (4 s), 1200-1501 (301 s), 1800-1802 (2 s)
        "web": (17, 6, 1, 3, 1, 5, 307.0, "RUNNING"),
        # unknown until 1300 (its first entry; nothing before the window), starting
        # 1300-1301, stopped 1400-2000
        "workers:worker_00": (4, 0, 0, 0, 0, 0, 601.0, "STOPPED"),
        # stopping and stopped 1600-1602, then gone
        "old": (3, 0, 0, 0, 0, 0, 2.0, None),
        # unknown until 1700, then exited until the end; expected unknown: no crash
        "resynced": (1, 0, 0, 0, 0, 0, 300.0, "EXITED"),
        # stopped from the window's start (the entry at 900 counts from 1000) to 1950,
        # starting until the entry stamped 2100, i.e. the window's end
        "skewed": (3, 1, 0, 0, 0, 0, 1000.0, "RUNNING"),
    }


def test_a_process_that_was_running_before_the_window_restarts_on_its_first_start() -> None:
    crash = [t(1100, "p", "RUNNING", "EXITED", expected=False), t(1101, "p", "EXITED", "STARTING"),
             t(1102, "p", "STARTING", "RUNNING")]  # fmt: skip
    (summary,) = analyze(crash, SINCE, UNTIL).values()
    assert (summary.restarts, summary.crashes, summary.not_running_s) == (1, 1, 2.0)
    first_start = [t(1100, "p", "STOPPED", "STARTING"), t(1101, "p", "STARTING", "RUNNING")]
    (summary,) = analyze(first_start, SINCE, UNTIL).values()
    assert (summary.restarts, summary.crashes, summary.not_running_s) == (0, 0, 1.0)  # unknown before 1100
    assert analyze([], SINCE, UNTIL) == {}


def test_the_json_report() -> None:
    document = report("web1", None, interleaved(), SINCE, UNTIL)
    assert document["since"] == "1970-01-01T00:16:40+00:00"
    assert len(document["transitions"]) == 28
    assert document["transitions"][0] == {
        "entry_id": "900000-0", "at": 900, "time": "1970-01-01T00:15:00+00:00", "process": "skewed",
        "name": "skewed", "group": "skewed", "event": "PROCESS_STATE_STOPPED", "from_state": "RUNNING",
        "to_state": "STOPPED", "pid": 0, "exitstatus": 0, "expected": None, "resync": False,
    }  # fmt: skip
    web = next(p for p in document["processes"] if p["process"] == "web")
    assert web == {"process": "web", "transitions": 17, "restarts": 6, "crashes": 5, "unexpected_exits": 1,
                   "backoffs": 3, "fatals": 1, "not_running_s": 307.0, "state": "RUNNING"}  # fmt: skip
    assert [p["process"] for p in document["processes"]] == sorted(
        ["web", "workers:worker_00", "old", "resynced", "skewed"]
    )


def test_process_labels() -> None:
    assert process_label("worker_00", "workers") == "workers:worker_00"
    assert process_label("web", "web") == "web"
    assert process_label("web", "") == "web"


# -- the commands ------------------------------------------------------------------------------


def run(*argv: str) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def scripted(client: Any, host: str, base: float) -> FakePublisher:
    """WEB and WORKER's first two entries, as the publisher writes them, at base + (at - 1000)."""
    publisher = FakePublisher(client, host)
    publisher.infos["web"] = {**blank_info("web", "web"), "statename": "RUNNING", "state": 20, "pid": 10}  # before
    for step in WEB + WORKER[:2]:
        assert step.to_state is not None
        publisher.transition(
            step.name, step.to_state, pid=step.pid, now=base + step.at - SINCE, expected=step.expected,
            exitstatus=step.exitstatus, group=step.group,
        )  # fmt: skip
    return publisher


@pytest.mark.integration
def test_history_prints_the_transitions_and_exact_figures(redis_server: RedisServer) -> None:
    client = redis_server.client()
    base = float(client.time()[0]) - 3600
    scripted(client, "web1", base)
    code, out, err = run("history", "web1", "--redis-url", redis_server.url)
    assert (code, err) == (0, "")
    header, transitions, summary = out.rstrip("\n").split("\n\n")
    assert header.startswith("web1: 19 transitions from ")
    rows = [line.split() for line in transitions.splitlines()]
    assert rows[0] == ["TIME", "PROCESS", "TRANSITION", "PID", "EXIT"]
    assert rows[1][2:] == ["web", "RUNNING", "->", "STOPPING", "10"]
    assert rows[5][2:] == ["web", "RUNNING", "->", "EXITED", "-", "1", "(unexpected)"]
    assert rows[15][2:] == ["web", "RUNNING", "->", "EXITED", "-", "0", "(expected)"]
    assert rows[18][2:] == ["workers:worker_00", "STOPPED", "->", "STARTING", "-"]
    assert summary.splitlines()[0].split() == ["PROCESS", "RESTARTS", "CRASHES", "NOT", "RUNNING", "STATE"]
    by_process = {row[0]: row[1:] for row in (line.split() for line in summary.splitlines()[1:])}
    assert by_process["web"] == ["6", "5", "0:05:07", "RUNNING"]
    # Its first entry is its first start: nothing known before it, nothing counted; then
    # STARTING for 1 s (RUNNING since).
    assert by_process["workers:worker_00"] == ["0", "0", "0:00:01", "RUNNING"]

    code, out, _ = run("history", "web1", "web", "--json", "--redis-url", redis_server.url)
    assert code == 0
    document = json.loads(out)
    assert [t["process"] for t in document["transitions"]] == ["web"] * 17
    assert document["processes"] == [
        {"process": "web", "transitions": 17, "restarts": 6, "crashes": 5, "unexpected_exits": 1, "backoffs": 3,
         "fatals": 1, "not_running_s": 307.0, "state": "RUNNING"}
    ]  # fmt: skip
    assert document["transitions"][4]["expected"] is False
    code, out, _ = run("history", "web1", "workers:worker_00", "--json", "--redis-url", redis_server.url)
    assert [p["process"] for p in json.loads(out)["processes"]] == ["workers:worker_00"]
    code, out, _ = run("history", "web1", "worker_00", "--json", "--redis-url", redis_server.url)
    assert [p["process"] for p in json.loads(out)["processes"]] == ["workers:worker_00"]


@pytest.mark.integration
def test_history_window(redis_server: RedisServer) -> None:
    client = redis_server.client()
    publisher = FakePublisher(client, "web1")
    old = int(client.time()[0]) - 7200
    publisher.transition("web", "STARTING", now=old, entry_id=f"{old * 1000}-0")  # two hours ago
    publisher.transition("web", "RUNNING", pid=5, now=old + 5400, entry_id=f"{(old + 5400) * 1000}-0")  # 30 min ago
    ids = [i.decode() for i, _ in client.xrange(keys.history_key("web1"))]
    code, out, _ = run("history", "web1", "--since", "1h", "--json", "--redis-url", redis_server.url)
    assert code == 0
    assert [t["entry_id"] for t in json.loads(out)["transitions"]] == ids[1:]
    code, out, _ = run("history", "web1", "--since", "3h", "--json", "--redis-url", redis_server.url)
    assert [t["entry_id"] for t in json.loads(out)["transitions"]] == ids
    code, out, _ = run("history", "web1", "--since", ids[1], "--json", "--redis-url", redis_server.url)
    assert [t["entry_id"] for t in json.loads(out)["transitions"]] == ids[1:]
    # A host with history but none in the window, and one that is only a snapshot.
    code, out, err = run("history", "web1", "--since", "10m", "--redis-url", redis_server.url)
    assert (code, err) == (0, "")
    assert out.startswith("web1: no transitions from ")
    client.hset(keys.snapshot_key("web2"), "x", json.dumps({"name": "x"}))
    code, out, err = run("history", "web2", "--redis-url", redis_server.url)
    assert (code, err) == (0, "")
    assert out.startswith("web2: no transitions from ")


@pytest.mark.integration
def test_history_of_an_unknown_host_is_exit_1(redis_server: RedisServer) -> None:
    code, out, err = run("history", "nowhere\x1b[2J", "--redis-url", redis_server.url)
    assert code == 1
    assert out == ""
    assert (
        err == "raptor history: unknown host nowhere\\x1b[2J: no history, snapshot or meta record of it in this Redis\n"
    )


@pytest.mark.integration
def test_history_escapes_control_characters(redis_server: RedisServer) -> None:
    client = redis_server.client()
    publisher = FakePublisher(client, "web1")
    publisher.transition("evil\x1b]0;owned\x07\u202e", "STARTING")
    code, out, _ = run("history", "web1", "--redis-url", redis_server.url)
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "evil\\x1b]0;owned\\x07\\u202e" in out
    code, out, _ = run("history", "web1", "--json", "--redis-url", redis_server.url)
    assert "\x1b" not in out and "\u202e" not in out
    assert json.loads(out)["transitions"][0]["name"] == "evil\x1b]0;owned\x07\u202e"


# -- status: RESTARTS ---------------------------------------------------------------------------


@pytest.mark.integration
def test_status_counts_the_restarts_of_the_last_hour(redis_server: RedisServer) -> None:
    client = redis_server.client()
    now = float(client.time()[0])
    web1 = FakePublisher(client, "web1")
    two_hours_ago = int((now - 7200) * 1000)
    web1.transition("web", "STARTING", now=now - 7200, entry_id=f"{two_hours_ago}-0")
    web1.transition("web", "RUNNING", pid=1, now=now - 7200, entry_id=f"{two_hours_ago}-1")
    web1.transition("web", "EXITED", now=now - 7200, expected=False, entry_id=f"{two_hours_ago}-2")
    web1.transition("web", "STARTING", now=now - 7200, entry_id=f"{two_hours_ago}-3")  # a restart, too old
    web1.transition("web", "RUNNING", pid=2, now=now - 7200, entry_id=f"{two_hours_ago}-4")
    for pid in (3, 4):  # two restarts within the hour
        web1.transition("web", "STOPPING", pid=pid - 1, now=now - 60)
        web1.transition("web", "STOPPED", now=now - 60)
        web1.transition("web", "STARTING", now=now - 60)
        web1.transition("web", "RUNNING", pid=pid, now=now - 60)
    web1.transition("db", "STARTING", now=now - 30)  # a first start: not a restart
    web1.transition("db", "RUNNING", pid=9, now=now - 30)
    web2 = FakePublisher(client, "web2")
    web2.transition("web", "STARTING", now=now - 10)
    code, out, err = run("status", "--redis-url", redis_server.url)
    assert (code, err) == (0, "")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["HOST", "PROCS", "RUNNING", "STARTING", "RESTARTS", "REFRESHED", "STATUS"]
    assert rows[1][:5] == ["web1", "2", "2", "0", "2"]
    assert rows[2][:5] == ["web2", "1", "0", "1", "0"]
    code, out, _ = run("status", "--redis-url", redis_server.url, "--host", "web1")
    _, detail = out.split("\n\n")
    assert [line.split()[:5] for line in detail.splitlines()] == [
        ["HOST", "PROCESS", "STATE", "PID", "RESTARTS"],
        ["web1", "db", "RUNNING", "9", "0"],
        ["web1", "web", "RUNNING", "4", "2"],
    ]
    code, out, _ = run("status", "--json", "--redis-url", redis_server.url)
    hosts = {h["host"]: h for h in json.loads(out)["hosts"]}
    assert (hosts["web1"]["restarts_1h"], hosts["web1"]["process_restarts_1h"]) == (2, {"web": 2})
    assert (hosts["web2"]["restarts_1h"], hosts["web2"]["process_restarts_1h"]) == (0, {})


def test_transition_from_a_message_takes_now_else_the_entry_time() -> None:
    publisher_entry = history_entry(
        {"event": "PROCESS_STATE_EXITED", "host": "h", "name": "n", "group": "g", "statename": "EXITED", "state": 100,
         "from_state": "RUNNING", "pid": 0, "exitstatus": 3, "now": "2026-11-24T13:18:22+00:00", "seq": 1,
         "run_id": "r", "resync": False},  # type: ignore[typeddict-item]
        expected=False,
    )  # fmt: skip
    transition = Transition.from_message("1-0", message_from_entry(publisher_entry), 5.0)
    assert transition == Transition("1-0", 1795526302.0, "g:n", "n", "g", "PROCESS_STATE_EXITED", "RUNNING",
                                    "EXITED", 0, 3, False, False)  # fmt: skip
    no_time: Dict[str, Any] = {**message_from_entry(publisher_entry), "now": None}
    assert Transition.from_message("1-0", no_time, 5.0).at == 5.0


# -- names are untrusted ------------------------------------------------------------------------

HOSTILE = "evil\x1b[2J\x1b]0;owned\x07\x9b31m\u202e\u2028\U000e0041[bold]x[/bold]"


def test_printable_and_json_text_leave_no_control_character() -> None:
    shown = printable(HOSTILE)
    assert shown == "evil\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\u202e\\u2028\\U000e0041[bold]x[/bold]"
    assert printable("café web-1 Ünïcode 名前") == "café web-1 Ünïcode 名前"
    assert printable(42) == "42"
    for indent in (None, 2):
        text = json_text({"name": HOSTILE, "ok": "café", "list": [1, None]}, indent=indent)
        assert all(c.isprintable() or c == "\n" for c in text)
        assert json.loads(text) == {"name": HOSTILE, "ok": "café", "list": [1, None]}
        assert "café" in text


def test_tail_lines_and_watch_cells_are_escaped() -> None:
    message = {"event": "PROCESS_STATE_RUNNING", "host": HOSTILE, "name": HOSTILE, "statename": "RUNNING",
               "from_state": "STARTING", "pid": 1, "now": "2026-11-24T13:18:22+00:00"}  # fmt: skip
    line = format_line(message)
    assert line.isprintable()
    fleet = Fleet()
    fleet.apply({**message, "seq": 1, "run_id": "r", "description": HOSTILE})
    console = Console(record=True, width=400, force_terminal=True, color_system="truecolor")
    console.print(render(fleet, {}, host_glob=None, app=None, now=0.0, status="live"))
    drawn = console.export_text(styles=False)
    assert "[bold]x[/bold]" in drawn  # shown as text, not read as markup
    assert "\x1b[2J" not in console.export_text(styles=True)
    assert "\\x1b[2J" in drawn


# -- issue 25, finding 3: time not RUNNING counts from what the history knows -------------------


def test_not_running_is_never_counted_before_the_first_thing_the_history_knows() -> None:
    """A process first seen 3 s before the end of the window, RUNNING since: the STARTING
    second only, not the window's 998 s before it (its first entry's from_state, STOPPED,
    is what supervisord says of a process it has just created). What the history says
    before the window (the process' last transition before it) is known, and counts."""
    appeared = [t(1997, "p", "STOPPED", "STARTING"), t(1998, "p", "STARTING", "RUNNING", pid=1)]
    (summary,) = analyze(appeared, SINCE, UNTIL).values()
    assert (summary.not_running_s, summary.state) == (1.0, "RUNNING")
    # Stopped by hand before the window: STOPPED from the window's start on.
    stopped_before = t(500, "p", "STOPPING", "STOPPED")
    summaries = analyze([*appeared, t(1999, "q", "STOPPED", "STARTING")], SINCE, UNTIL, {"p": stopped_before})
    assert (summaries["p"].not_running_s, summaries["q"].not_running_s) == (998.0, 1.0)
    # The one definition, for one process: raptor history, raptor web, the metrics, not_running.
    from raptor.consumer import history  # noqa: PLC0415 (the function this finding adds)

    assert history.time_not_running(appeared, SINCE, UNTIL) == 1.0
    assert history.time_not_running(appeared, SINCE, UNTIL, stopped_before) == 998.0
    # RUNNING before the window: nothing until it stops; the first entry's from_state
    # does not override what was known (it agrees here anyway).
    stops = [t(1500, "p", "RUNNING", "STOPPING"), t(1501, "p", "STOPPING", "STOPPED")]
    assert history.time_not_running(stops, SINCE, UNTIL, t(400, "p", "STARTING", "RUNNING")) == 500.0
    assert history.time_not_running(stops, SINCE, UNTIL) == 500.0
    # Removed before the window: unknown again until it appears.
    assert history.time_not_running(appeared, SINCE, UNTIL, t(600, "p", None, None)) == 1.0
    # FATAL before the window and nothing since: the whole window.
    assert history.time_not_running([], SINCE, UNTIL, t(10, "p", "BACKOFF", "FATAL")) == 1000.0
    assert history.time_not_running([], SINCE, UNTIL) == 0.0
    # A resync entry carries no from_state: the same rule.
    assert history.time_not_running(RESYNCED, SINCE, UNTIL) == 300.0


@pytest.mark.integration
def test_history_counts_not_running_from_the_processes_last_transition_before_the_window(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """raptor history reads the host's history before the window for the state each
    process of the window was in at its start, past other processes' entries; no further
    back than EARLIER_LIMIT entries (beyond, unknown: not counted)."""
    client = redis_server.client()
    now = int(client.time()[0])
    publisher = FakePublisher(client, "web1")

    def at(name: str, to_state: str, ago: int, sequence: int = 0, pid: int = 0) -> None:
        entry_id = f"{(now - ago) * 1000}-{sequence}"
        publisher.transition(name, to_state, pid=pid, now=now - ago, entry_id=entry_id)

    at("web", "STARTING", 10800)
    at("web", "RUNNING", 10799, pid=1)
    at("web", "STOPPING", 7200, pid=1)
    at("web", "STOPPED", 7200, 1)  # stopped by hand, two hours ago
    for n in range(2500):  # another process flapping since: more than two reads of entries back
        at("db", ("STARTING", "RUNNING", "STOPPING", "STOPPED")[n % 4], 7000 - n, pid=n)
    window = f"({(now - 4000) * 1000}-0"  # after db's entries (the last one 4501 s old), before web's start
    at("web", "STARTING", 600)
    at("web", "RUNNING", 598, pid=3)
    at("new", "STARTING", 3)  # first seen 3 s ago
    at("new", "RUNNING", 2, pid=4)
    code, out, err = run("history", "web1", "--since", window, "--json", "--redis-url", redis_server.url)
    assert (code, err) == (0, "")
    figures = {p["process"]: (p["not_running_s"], p["state"]) for p in json.loads(out)["processes"]}
    # web: STOPPED from the window's start (now - 4000) until RUNNING (now - 598).
    assert figures == {"web": (3402.0, "RUNNING"), "new": (1.0, "RUNNING")}
    for program, figure in (("web", 3402.0), ("new", 1.0)):
        code, out, _ = run("history", "web1", program, "--since", window, "--json", "--redis-url", redis_server.url)
        assert [p["not_running_s"] for p in json.loads(out)["processes"]] == [figure]
    monkeypatch.setattr(cli, "EARLIER_LIMIT", 1000)  # web's STOPPED is 2,500 entries back
    code, out, _ = run("history", "web1", "web", "--since", window, "--json", "--redis-url", redis_server.url)
    assert [p["not_running_s"] for p in json.loads(out)["processes"]] == [2.0]  # its STARTING only


def test_a_first_transition_from_a_down_state_counts_from_the_windows_start() -> None:
    """Issue 25 (review of 10b884d): with no transition before the window (older history
    trimmed by retention), the first one's from_state is evidence: FATAL, EXITED or
    BACKOFF means down since the window's start. Only STOPPED (what supervisord says of a
    process it has just created) or None (a resync) says nothing."""
    from raptor.consumer import history  # noqa: PLC0415

    for down in ("FATAL", "EXITED", "BACKOFF"):
        started = [t(1500, "p", down, "STARTING"), t(1501, "p", "STARTING", "RUNNING", pid=1)]
        assert history.time_not_running(started, SINCE, UNTIL) == 501.0, down
        (summary,) = analyze(started, SINCE, UNTIL).values()
        assert summary.not_running_s == 501.0, down
    appeared = [t(1500, "p", "STOPPED", "STARTING"), t(1501, "p", "STARTING", "RUNNING", pid=1)]
    assert history.time_not_running(appeared, SINCE, UNTIL) == 1.0
    # What the history knows before the window wins over a from_state.
    running_before = t(400, "p", "STARTING", "RUNNING")
    fatal_first = [t(1500, "p", "FATAL", "STARTING"), t(1501, "p", "STARTING", "RUNNING", pid=1)]
    assert history.time_not_running(fatal_first, SINCE, UNTIL, running_before) == 1.0
