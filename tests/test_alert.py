"""raptor alert against a real Redis fed by real supervisords, notifying a real HTTP
receiver on loopback through Apprise."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from harness import BIN, ListenerSpec, ProgramSpec, RedisServer, Supervisords, wait_for
from harness.receivers import HttpReceiver, SmtpReceiver
from raptor.alert import service
from raptor.alert.config import parse
from raptor.alert.service import Alerter, key
from raptor.consumer.follow import make_client
from raptor.consumer.stream import parse_id
from raptor.consumer.text import as_text

# Minutes of real processes: run once by make pytest, not again per interpreter (noxfile).
pytestmark = [pytest.mark.integration, pytest.mark.alerter]


def config_text(port: int, **more: str) -> str:
    extra = "".join(f"{name}: {value}\n" for name, value in more.items())
    return f"""
notify:
  hook: "json://127.0.0.1:{port}/hook"
group_window: 1s
{extra}rules:
  - kind: fatal
    remind_every: 0
  - kind: unexpected_exit
    remind_every: 0
"""


class Running:
    """An alerter in a thread of this process, stopped at the end."""

    def __init__(self, url: str, text: str, consumer: str, fleet_every: float = 15.0) -> None:
        self.stop = threading.Event()
        config = parse(text)
        client = make_client(url)
        self.alerter = Alerter(client, config, consumer=consumer, lease=3.0, block=0.2, fleet_every=fleet_every)
        self.alerter.ensure_group()
        self.thread = threading.Thread(target=self.alerter.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as found:
        yield found


def settled_alerter(client: Any, after: str) -> bool:
    """Whether the alerter has judged every entry up to *after* and told all it had to."""
    groups = {g["name"]: g for g in client.xinfo_groups("proc_history")}
    group = groups[b"raptor-alert"] if b"raptor-alert" in groups else groups["raptor-alert"]
    last = group["last-delivered-id"]
    last = last.decode() if isinstance(last, bytes) else last
    notices = json.loads(client.get(key("raptor-alert", "notices")) or "{}")
    return (
        parse_id(last) >= parse_id(after)
        and group["pending"] == 0
        and client.xlen(key("raptor-alert", "outbox")) == 0
        and not notices.get("groups")
    )


def test_fatal_and_repeated_unexpected_exits_are_one_notice_each(
    tmp_path: Path, redis_server: RedisServer, start_supervisord: Supervisords, receiver: HttpReceiver
) -> None:
    commands = {"crasher": "sh -c 'exit 3'", "dier": "sh -c 'sleep 1.3; exit 3'"}
    program = ProgramSpec(commands=commands, options={"startretries": "1"})
    alerter = Running(redis_server.url, config_text(receiver.port), "a1")
    client = redis_server.client()
    try:
        sup = start_supervisord(["steady", "crasher", "dier"], redis_server.url, hostname="h1", program=program)
        wait_for(lambda: sup.truth()["crasher"]["statename"] == "FATAL", 30, "the crasher to end FATAL")

        def third_exit() -> str:
            exits = [
                i.decode()
                for i, f in client.xrange("proc_history")
                if f.get(b"name") == b"dier" and f.get(b"event") == b"PROCESS_STATE_EXITED"
            ]
            return exits[2] if len(exits) >= 3 else ""

        after = wait_for(third_exit, 30, "dier to exit three times")
        wait_for(lambda: settled_alerter(client, after), 20, "the alerter to judge and tell everything")
        titles = receiver.titles()
        assert sorted(titles) == ["[raptor] fatal: h1 crasher", "[raptor] unexpected_exit: h1 dier"]
        [dier] = [b for b in receiver.bodies if b["title"].endswith("dier")]
        assert "dier: RUNNING -> EXITED (unexpected)" in dier["message"]
    finally:
        alerter.close()


def fatal_programs(receiver: HttpReceiver) -> List[str]:
    """The programs the FATAL notices told of: one per single notice (in its title), or
    one per line of a grouped one (``- h1 p03: ...``)."""
    found: List[str] = []
    for body in receiver.bodies:
        title = str(body["title"])
        if title.startswith("[raptor] fatal: h1 "):
            found.append(title.rsplit(" ", 1)[1])
        elif title.startswith("[raptor] fatal: "):
            found += [line.split()[2].rstrip(":") for line in body["message"].splitlines() if line.startswith("- h1 ")]
    return found


def alerter_process(url: str, config: Path, consumer: str, log: Path) -> subprocess.Popen[bytes]:
    command = [str(BIN / "raptor"), "alert", "--redis-url", url, "--config", str(config)]
    command += ["--consumer", consumer, "--lease", "2"]
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def test_two_alerters_one_killed_mid_burst_tell_each_incident_once(
    tmp_path: Path, redis_server: RedisServer, start_supervisord: Supervisords, receiver: HttpReceiver
) -> None:
    config = tmp_path / "alert.yml"
    config.write_text(config_text(receiver.port))
    client = redis_server.client()
    processes = {name: alerter_process(redis_server.url, config, name, tmp_path / f"{name}.log") for name in "ab"}
    try:
        wait_for(lambda: client.get(key("raptor-alert", "leader")), 20, "an alerter to lead")
        programs = [f"p{n:02d}" for n in range(15)]
        spec = ProgramSpec(command="sh -c 'exit 3'", options={"startretries": "2"})
        sup = start_supervisord(programs, redis_server.url, hostname="h1", program=spec)
        # Mid-burst: the first program is FATAL, others are still retrying.
        wait_for(lambda: any(i["statename"] == "FATAL" for i in sup.truth().values()), 30, "a first FATAL")
        leader = client.get(key("raptor-alert", "leader")).decode()
        processes[leader].send_signal(signal.SIGKILL)
        processes[leader].wait(10)
        states = lambda: {sup.truth()[p]["statename"] for p in programs}  # noqa: E731
        wait_for(lambda: states() == {"FATAL"}, 30, "every program FATAL")
        last = client.xrevrange("proc_history", count=1)[0][0].decode()
        wait_for(lambda: settled_alerter(client, last), 30, "the other alerter to take over and tell everything")
        told = fatal_programs(receiver)
        assert sorted(told) == programs, receiver.titles()  # each once: none missed, none twice
        survivor = "b" if leader == "a" else "a"
        assert client.get(key("raptor-alert", "leader")).decode() == survivor
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait(10)


def test_a_receiver_down_for_30_s_gets_the_notice_when_it_is_back(
    tmp_path: Path, redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    receiver = HttpReceiver()  # not listening yet
    alerter = Running(redis_server.url, config_text(receiver.port), "a1")
    client = redis_server.client()
    try:
        spec = ProgramSpec(commands={"crasher": "sh -c 'exit 3'"}, options={"startretries": "0"})
        sup = start_supervisord(["crasher"], redis_server.url, hostname="h1", program=spec)
        wait_for(lambda: sup.truth()["crasher"]["statename"] == "FATAL", 30, "the crasher to end FATAL")
        queued = wait_for(lambda: client.xlen(key("raptor-alert", "outbox")), 10, "the notice in the outbox")
        down = time.monotonic()
        wait_for(lambda: time.monotonic() - down >= 30, 31, "30 s with the receiver down", interval=1.0)
        assert client.xlen(key("raptor-alert", "outbox")) == queued == 1  # still there: not dropped
        receiver.start()
        wait_for(receiver.titles, 60, "the notice after the receiver came back")
        assert receiver.titles() == ["[raptor] fatal: h1 crasher"]
        wait_for(
            lambda: client.xlen(key("raptor-alert", "outbox")) == 0, 10, "the delivered notice to leave the outbox"
        )
    finally:
        alerter.close()
        receiver.stop()


def test_a_notice_goes_to_every_target_a_mail_server_and_a_webhook(
    tmp_path: Path, redis_server: RedisServer, start_supervisord: Supervisords, receiver: HttpReceiver
) -> None:
    with SmtpReceiver() as mail:
        mailto = f"mailto://127.0.0.1:{mail.port}?from=raptor@example.com&to=ops@example.com&mode=insecure"
        text = config_text(receiver.port).replace("notify:\n", f'notify:\n  mail: "{mailto}"\n', 1)
        alerter = Running(redis_server.url, text, "a1")
        try:
            spec = ProgramSpec(commands={"crasher": "sh -c 'exit 3'"}, options={"startretries": "0"})
            start_supervisord(["crasher"], redis_server.url, hostname="h1", program=spec)
            wait_for(lambda: receiver.titles() and mail.subjects(), 30, "the notice by mail and by webhook")
            client = redis_server.client()
            wait_for(lambda: client.xlen(key("raptor-alert", "outbox")) == 0, 10, "both deliveries done")
            assert receiver.titles() == mail.subjects() == ["[raptor] fatal: h1 crasher"]
            parts = [p.get_payload(decode=True) or b"" for p in mail.messages[0].walk() if not p.is_multipart()]
            assert any(b"host: h1" in part and b"program: crasher" in part for part in parts)
        finally:
            alerter.close()


def test_a_silent_host_is_stale_then_resolved_and_two_names_of_one_supervisord_are_a_duplicate(
    tmp_path: Path, redis_server: RedisServer, start_supervisord: Supervisords, receiver: HttpReceiver
) -> None:
    tick5 = "PROCESS_STATE,PROCESS_GROUP,TICK_5"  # snapshots refreshed every 5 s
    quiet = start_supervisord(["a"], redis_server.url, hostname="quiet", listener=ListenerSpec(events=tick5))
    start_supervisord(
        ["b"],
        redis_server.url,
        listener=ListenerSpec(events=tick5, hosts={"proc_publisher": "dup-a", "second": "dup-b"}),
    )
    text = f"""
notify: {{hook: "json://127.0.0.1:{receiver.port}/hook"}}
group_window: 0s
rules:
  - {{kind: stale, after: 12s, remind_every: 0}}
  - {{kind: duplicate, remind_every: 0}}
"""
    stop = threading.Event()
    alerter = Alerter(make_client(redis_server.url), parse(text), consumer="a1", lease=3.0, block=0.2, fleet_every=1.0)
    alerter.ensure_group()
    thread = threading.Thread(target=alerter.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: "[raptor] duplicate: dup-a dup-b" in receiver.titles(), 30, "the duplicate notice")
        quiet.ctl("stop", "proc_publisher")
        wait_for(lambda: "[raptor] stale: quiet" in receiver.titles(), 40, "the stale notice")
        quiet.ctl("start", "proc_publisher")
        wait_for(lambda: "[raptor] RESOLVED stale: quiet" in receiver.titles(), 40, "the resolved notice")
        assert sorted(receiver.titles()) == [
            "[raptor] RESOLVED stale: quiet",
            "[raptor] duplicate: dup-a dup-b",
            "[raptor] stale: quiet",
        ]
        [stale] = [b for b in receiver.bodies if b["title"] == "[raptor] stale: quiet"]
        assert "snapshot not refreshed for" in stale["message"]
    finally:
        stop.set()
        thread.join(10)


ALERT_ACL = (
    "~host_procs:* ~host_meta:* ~proc_history ~raptor_alert:* resetchannels "
    "+hgetall +scan +ttl +xrange +xinfo +multi +exec +ping "
    "+xgroup|create +xgroup|delconsumer +xreadgroup +xack +xautoclaim +evalsha +script|load "
    "+get +set +pexpire +watch +unwatch +hset +hdel +xadd +xdel"
)
README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_gives_the_alerters_acl() -> None:
    assert f"ACL SETUSER raptor_alert reset on >CHANGE-ME {ALERT_ACL}\n" in README.read_text(encoding="utf-8")


def test_the_alerter_works_as_the_readmes_redis_user(
    tmp_path: Path,
    redis_server: RedisServer,
    start_supervisord: Supervisords,
    receiver: HttpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "raptor_alert", "reset", "on", ">alert-pw", *ALERT_ACL.split())
    url = f"redis://raptor_alert:alert-pw@127.0.0.1:{redis_server.port}/0"
    # an old consumer, forgotten at the takeover (XGROUP DELCONSUMER)
    admin.xgroup_create("proc_history", "raptor-alert", id="$", mkstream=True)
    admin.xgroup_createconsumer("proc_history", "raptor-alert", "gone:1234")
    monkeypatch.setattr(service, "FORGET_IDLE_MS", 0)
    # a host rule too: the fleet's snapshots are read (SCAN, HGETALL, TTL) under the ACL
    alerter = Running(url, config_text(receiver.port) + "  - kind: stale\n", "a1", fleet_every=0.5)
    try:
        spec = ProgramSpec(commands={"crasher": "sh -c 'exit 3'"}, options={"startretries": "0"})
        start_supervisord(["crasher"], redis_server.url, hostname="h1", program=spec)
        wait_for(receiver.titles, 30, "the notice, the alerter connected as raptor_alert")
        assert receiver.titles() == ["[raptor] fatal: h1 crasher"]
        assert alerter.thread.is_alive()
        consumers = admin.xinfo_consumers("proc_history", "raptor-alert")
        assert [c["name"] for c in consumers] == [b"a1"]
    finally:
        alerter.close()
    # it gave the lease up as it stopped (PEXPIRE, under the same ACL)
    wait_for(lambda: admin.get(key("raptor-alert", "leader")) is None, 1, "the lease to be given up")


def entered(client: Any, host: str = "h1") -> Dict[str, List[str]]:
    """Per process of *host*, the states the fleet stream says it entered, in order."""
    found: Dict[str, List[str]] = {}
    for _, fields in client.xrange("proc_history"):
        if fields.get(b"host") == host.encode() and fields.get(b"statename"):
            found.setdefault(fields[b"name"].decode(), []).append(fields[b"statename"].decode())
    return found


def last_entry(client: Any) -> str:
    return str(client.xrevrange("proc_history", count=1)[0][0].decode())


def judged_up_to_now(client: Any) -> None:
    """Wait until the alerter has judged the fleet stream up to its last entry now, and told all it had to."""
    after = last_entry(client)
    wait_for(lambda: settled_alerter(client, after), 20, "the alerter to judge and tell everything")


def test_a_crash_loop_is_one_notice_not_one_per_start(
    tmp_path: Path, redis_server: RedisServer, start_supervisord: Supervisords, receiver: HttpReceiver
) -> None:
    """Two loops: one that reaches RUNNING each time and exits 1.2 s after its start,
    one that dies at once and goes through BACKOFF (startretries 100: it never ends in
    FATAL). EXITED and BACKOFF both count, STARTING does not. Each goes on well past its
    third: still one notice each."""
    text = f"""
notify: {{hook: "json://127.0.0.1:{receiver.port}/hook"}}
group_window: 1s
remind_every: 0
rules:
  - {{kind: crash_loop, starts: 3, within: 1m, programs: looper}}
  - {{name: backoff_loop, kind: crash_loop, starts: 3, within: 1m, programs: backoffer}}
"""
    commands = {"looper": "sh -c 'sleep 1.2; exit 3'", "backoffer": "sh -c 'exit 3'"}
    program = ProgramSpec(commands=commands, options={"startretries": "100"})
    alerter = Running(redis_server.url, text, "a1")
    client = redis_server.client()
    try:
        start_supervisord(["looper", "backoffer"], redis_server.url, hostname="h1", program=program)

        def looping() -> bool:
            seen = entered(client)
            looper, backoffer = seen.get("looper", []), seen.get("backoffer", [])
            return looper.count("STARTING") >= 5 and backoffer.count("BACKOFF") >= 4

        wait_for(looping, 40, "looper to start 5 times and backoffer to back off 4 times")
        # Left looping: an open incident takes the next starts as evidence, never as news.
        judged_up_to_now(client)
        seen = entered(client)
        assert seen["looper"].count("RUNNING") >= 4 and seen["looper"].count("EXITED") >= 4  # it lived a little
        assert "RUNNING" not in seen["backoffer"] and seen["backoffer"].count("BACKOFF") >= 4
        assert sorted(receiver.titles()) == ["[raptor] backoff_loop: h1 backoffer", "[raptor] crash_loop: h1 looper"]
        bodies = {b["title"]: b["message"] for b in receiver.bodies}
        assert "looper: RUNNING -> EXITED (unexpected) (3 crashes in 60 s)" in bodies["[raptor] crash_loop: h1 looper"]
        assert "backoffer: STARTING -> BACKOFF (3 crashes in 60 s)" in bodies["[raptor] backoff_loop: h1 backoffer"]
    finally:
        alerter.close()


def test_a_restart_all_of_200_programs_is_no_notice_and_the_host_going_away_is_one(
    tmp_path: Path, redis_server: RedisServer, start_supervisord: Supervisords, receiver: HttpReceiver
) -> None:
    """`supervisorctl restart all` stops each program on purpose (STOPPING, STOPPED: no
    exit, no crash) and starts it once more (2 starts: no loop), and each is RUNNING
    again well within not_running's 10 s: no notice at all. Then the host vanishes,
    supervisord and all its processes killed at once, nothing said: its programs were
    last seen RUNNING, so no rule on them can fire; the host's snapshot ages, and the
    whole host is one stale notice, not 200."""
    text = f"""
notify: {{hook: "json://127.0.0.1:{receiver.port}/hook"}}
group_window: 1s
remind_every: 0
rules:
  - kind: fatal
  - kind: unexpected_exit
  - {{kind: crash_loop, starts: 3, within: 10m}}
  - {{kind: not_running, after: 10s}}
  - {{kind: stale, after: 12s}}
"""
    programs = [f"p{n:03d}" for n in range(200)]
    alerter = Running(redis_server.url, text, "a1", fleet_every=1.0)
    client = redis_server.client()
    try:
        # TICK_5: the snapshot refreshed every 5 s, so that 12 s without is a host gone;
        # buffer_size as the role sizes it (6 per program, rounded up to 1024).
        listener = ListenerSpec(events="PROCESS_STATE,PROCESS_GROUP,TICK_5", buffer_size=2048)
        sup = start_supervisord(programs, redis_server.url, hostname="h1", listener=listener)

        def all_running(times: int) -> bool:
            seen = entered(client)
            return all(seen.get(p, [])[-1:] == ["RUNNING"] and seen[p].count("RUNNING") == times for p in programs)

        wait_for(lambda: all_running(1), 60, "the 200 programs RUNNING in the fleet stream", interval=0.5)
        result = sup.ctl("restart", "all")
        assert result.returncode == 0, result.stderr[-2000:]
        wait_for(lambda: all_running(2), 60, "the 200 programs RUNNING again in the fleet stream", interval=0.5)
        after = last_entry(client)
        wait_for(lambda: settled_alerter(client, after), 30, "the alerter to judge the restart")
        seen = entered(client)
        for name in programs:  # stopped on purpose, started once more: never EXITED, BACKOFF or FATAL
            assert "STOPPED" in seen[name] and seen[name].count("STARTING") == 2, seen[name]
            assert not {"EXITED", "BACKOFF", "FATAL"} & set(seen[name]), seen[name]
        assert receiver.titles() == []

        # The host goes away: supervisord frozen, every process of it killed (zombies
        # of the frozen supervisord until it dies: their pids cannot be reused), then it.
        assert sup.process is not None
        pids = [int(info["pid"]) for info in sup.truth().values() if info["pid"]]
        assert len(pids) == 201  # the programs and the listener
        os.kill(sup.process.pid, signal.SIGSTOP)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        sup.process.kill()
        sup.process.wait(10)
        gone = last_entry(client)
        wait_for(receiver.titles, 40, "a notice of the host gone")
        wait_for(lambda: settled_alerter(client, gone), 20, "the alerter to tell everything")
        assert receiver.titles() == ["[raptor] stale: h1"]
        message = receiver.bodies[0]["message"]
        assert "host: h1" in message and "program:" not in message  # the host's notice, none of a program
        assert "snapshot not refreshed for" in message
    finally:
        alerter.close()


def test_the_rate_limit_sends_max_notices_then_one_summary_counting_the_rest(
    tmp_path: Path, redis_server: RedisServer, start_supervisord: Supervisords, receiver: HttpReceiver
) -> None:
    """30 programs go FATAL within a second or two, each watched by a rule of its own
    (a rule's changes within group_window are one notice: one rule each keeps 30 notices
    apart, whatever the timing), 4 notices per 6 s allowed: 4 notices, then, 6 s
    after the first, one summary of the 26 held back, each of them named in it."""
    programs = [f"p{n:02d}" for n in range(30)]
    rules = "".join(f"  - {{name: fatal-{p}, kind: fatal, programs: 'crashers:{p}'}}\n" for p in programs)
    text = f"""
notify: {{hook: "json://127.0.0.1:{receiver.port}/hook"}}
group_window: 0s
remind_every: 0
rate_limit: {{max: 4, per: 6s}}
rules:
{rules}"""
    alerter = Running(redis_server.url, text, "a1")
    client = redis_server.client()
    try:
        # One group: supervisord's shutdown takes a second per group of stopped processes.
        spec = ProgramSpec(command="sh -c 'exit 3'", options={"startretries": "0"}, group="crashers")
        sup = start_supervisord(programs, redis_server.url, hostname="h1", program=spec)
        wait_for(lambda: all(sup.truth()[p]["statename"] == "FATAL" for p in programs), 30, "the 30 programs FATAL")
        wait_for(lambda: all(entered(client).get(p, [])[-1:] == ["FATAL"] for p in programs), 20, "30 FATALs read")
        after = last_entry(client)
        wait_for(lambda: len(receiver.titles()) >= 5, 30, "4 notices and the summary")
        wait_for(lambda: settled_alerter(client, after), 20, "the alerter to tell everything")
        titles = receiver.titles()
        assert len(titles) == 5, titles
        told = [title.rsplit(":", 1)[1] for title in titles[:4]]
        assert titles[:4] == [f"[raptor] fatal-{p}: h1 crashers:{p}" for p in told]
        assert titles[4] == "[raptor] 26 more suppressed"
        lines = receiver.bodies[4]["message"].splitlines()
        assert lines[0] == "26 more changes were held back by the rate limit (4 notices per 6 s):"
        held = [line.removeprefix("1 opened (fatal-").removesuffix(")") for line in lines[1:]]
        assert sorted(told + held) == programs  # each once: none lost, none twice
        first, fourth, summary = receiver.arrivals[0], receiver.arrivals[3], receiver.arrivals[4]
        assert fourth - first < 6  # the 4 within one window
        assert summary - first > 5  # the summary once it has passed (less the first send's own time)
        state = json.loads(client.get(key("raptor-alert", "notices")))
        assert state["held"] == [] and state["held_keys"] == []
    finally:
        alerter.close()


def test_a_stopped_leader_hands_over_at_once_and_idle_consumers_are_forgotten(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A planned stop (a new config, an upgrade) gives the lease up: the other alerter
    leads at its next step, not a lease later. A takeover forgets the group's consumers
    that have nothing pending and were idle for long (one per pid of the default name)."""
    client = redis_server.client()
    config = parse(config_text(9))
    first = Alerter(make_client(redis_server.url), config, consumer="a1", lease=60.0, block=0.01)
    second = Alerter(make_client(redis_server.url), config, consumer="a2", lease=60.0, block=0.01)
    first.ensure_group()
    client.xgroup_createconsumer("proc_history", "raptor-alert", "gone:1234")  # an alerter long gone
    assert first.step() and first.leading
    assert {as_text(c["name"]) for c in client.xinfo_consumers("proc_history", "raptor-alert")} == {"gone:1234"}
    assert not second.step()  # a1 holds a 60 s lease
    stopped = threading.Event()
    stopped.set()
    first.run(stopped)
    assert not first.leading
    wait_for(lambda: client.get(key("raptor-alert", "leader")) is None, 1, "the lease to be given up (PEXPIRE 1 ms)")
    # a consumer that read an entry and died before acknowledging it: kept (then claimed)
    client.xadd("proc_history", {"host": "h1", "name": "p"})
    client.xreadgroup("raptor-alert", "busy:99", {"proc_history": ">"}, count=1)
    monkeypatch.setattr(service, "FORGET_IDLE_MS", 0)
    assert second.step() and second.leading
    consumers = {as_text(c["name"]): c["pending"] for c in client.xinfo_consumers("proc_history", "raptor-alert")}
    assert consumers == {"busy:99": 0, "a2": 0}  # gone:1234 forgotten; busy:99's entry claimed, judged, acknowledged


def test_an_acl_without_delconsumer_still_alerts_and_other_targets_notices_wait_for_an_alerter_that_has_them(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forgetting idle consumers is housekeeping: refused by an older ACL, the alerter
    leads all the same. An outbox entry for a target this config lacks (queued by the
    other alerter, mid-rollout of a new config) is left for it, and removed after a day."""
    admin = redis_server.client()
    older_acl = ALERT_ACL.replace(" +xgroup|delconsumer", "")
    admin.execute_command("ACL", "SETUSER", "raptor_alert", "reset", "on", ">alert-pw", *older_acl.split())
    admin.xgroup_create("proc_history", "raptor-alert", id="$", mkstream=True)
    admin.xgroup_createconsumer("proc_history", "raptor-alert", "gone:1234")
    outbox = key("raptor-alert", "outbox")
    notice = json.dumps({"title": "t", "body": "b", "targets": ["pager"], "keys": [], "what": "opened"})
    admin.xadd(outbox, {"target": "pager", "notice": notice}, id="1000-0")  # 1970: no config has had it for a day
    recent = admin.xadd(outbox, {"target": "pager", "notice": notice}).decode()
    monkeypatch.setattr(service, "FORGET_IDLE_MS", 0)
    url = f"redis://raptor_alert:alert-pw@127.0.0.1:{redis_server.port}/0"
    alerter = Alerter(make_client(url), parse(config_text(9)), consumer="a1", lease=60.0, block=0.01)
    assert alerter.step() and alerter.leading
    assert [c["name"] for c in admin.xinfo_consumers("proc_history", "raptor-alert")] == [b"gone:1234"]
    assert [entry_id.decode() for entry_id, _ in admin.xrange(outbox)] == [recent]


# Every process rule, as the README's example sets them (not_running's 5 minutes are
# longer than these tests: it never speaks here).
EVERY_PROCESS_RULE = """
notify: {{hook: "json://127.0.0.1:{port}/hook"}}
group_window: 1s
remind_every: 0
rules:
  - kind: fatal
  - kind: unexpected_exit
  - kind: crash_loop{crash_loop}
  - kind: not_running
    after: 5m
"""


def test_a_program_that_never_starts_is_one_notice_fatal_not_a_crash_loop_too(
    tmp_path: Path, redis_server: RedisServer, start_supervisord: Supervisords, receiver: HttpReceiver
) -> None:
    """Issue 25, finding 2: with supervisord's default startretries (3), a program that
    exits at once goes STARTING -> BACKOFF four times, then FATAL. That is one cause:
    one notice, fatal (its retries were no crash loop: it never ran)."""
    text = EVERY_PROCESS_RULE.format(port=receiver.port, crash_loop="")  # 5 starts in 10 minutes
    program = ProgramSpec(commands={"broken": "sh -c 'exit 3'"}, options={"startretries": "3"})
    alerter = Running(redis_server.url, text, "a1")
    client = redis_server.client()
    try:
        sup = start_supervisord(["steady", "broken"], redis_server.url, hostname="h1", program=program)
        wait_for(lambda: sup.truth()["broken"]["statename"] == "FATAL", 30, "broken to end FATAL")
        wait_for(lambda: entered(client).get("broken", [])[-1:] == ["FATAL"], 10, "its FATAL in the history")
        assert entered(client)["broken"].count("BACKOFF") == 4
        judged_up_to_now(client)
        assert receiver.titles() == ["[raptor] fatal: h1 broken"]
        assert "broken: BACKOFF -> FATAL" in receiver.bodies[0]["message"]
    finally:
        alerter.close()


def test_a_program_that_runs_2_s_and_dies_again_and_again_is_one_crash_loop_notice(
    tmp_path: Path, redis_server: RedisServer, start_supervisord: Supervisords, receiver: HttpReceiver
) -> None:
    """Issue 25, finding 2: each run reaches RUNNING (startsecs 1) and exits 3 after
    2 s; supervisord restarts it for ever. One crash-loop notice (at its third crash),
    however long it goes on, and no fatal."""
    text = EVERY_PROCESS_RULE.format(port=receiver.port, crash_loop="\n    starts: 3\n    within: 1m")
    program = ProgramSpec(commands={"flapper": "sh -c 'sleep 2; exit 3'"})
    alerter = Running(redis_server.url, text, "a1")
    client = redis_server.client()
    try:
        start_supervisord(["steady", "flapper"], redis_server.url, hostname="h1", program=program)
        wait_for(lambda: entered(client).get("flapper", []).count("EXITED") >= 5, 40, "flapper to exit 5 times")
        judged_up_to_now(client)
        seen = entered(client)["flapper"]
        assert seen.count("RUNNING") >= 5 and "BACKOFF" not in seen and "FATAL" not in seen, seen
        loops = [b for b in receiver.bodies if str(b["title"]).startswith("[raptor] crash_loop:")]
        assert [b["title"] for b in loops] == ["[raptor] crash_loop: h1 flapper"], receiver.titles()
        assert not [t for t in receiver.titles() if t.startswith("[raptor] fatal:")]
        assert "flapper: RUNNING -> EXITED (unexpected)" in loops[0]["message"]
    finally:
        alerter.close()
