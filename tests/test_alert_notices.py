"""raptor alert's notices: grouped within the window, rate-limited with nothing dropped,
worded with the host, program, rule, evidence and a link; names from Redis escaped."""

from __future__ import annotations

from typing import List

from raptor.alert.config import AlertConfig, Match, Rule, Target
from raptor.alert.incidents import Change, Incident
from raptor.alert.notices import Notices


def config(**settings: object) -> AlertConfig:
    rules = tuple(Rule(kind, kind, Match(), ("ops",), 3600.0) for kind in ("fatal", "stale", "duplicate", "discarded"))
    values = {"web_url": "https://raptor.example/", "group_window": 10.0, **settings}
    return AlertConfig(targets={"ops": Target("ops", "json://x")}, rules=rules, **values)  # type: ignore[arg-type]


def change(what: str, rule: str, host: str, program: str = "", at: float = 0.0, line: str = "x") -> Change:
    return Change(what, Incident(rule, rule, host, program, at, [line]), at)


def test_one_incident_is_one_notice_after_the_window_with_its_evidence_and_link() -> None:
    notices = Notices(config())
    notices.add([change("opened", "fatal", "web1", "api", 90.0, "api: BACKOFF -> FATAL")], 100.0)
    assert notices.due(109.0) == []  # others may come in the window
    [notice] = notices.due(110.0)
    assert notice.title == "[raptor] fatal: web1 api"
    assert notice.targets == ("ops",) and notice.keys == (("fatal", "web1", "api"),)
    assert "api: BACKOFF -> FATAL" in notice.body
    assert "https://raptor.example/?view=process&host=web1&process=api" in notice.body
    assert notices.pending() == 0


def test_a_burst_of_200_incidents_is_one_notice_listing_twenty() -> None:
    notices = Notices(config())
    for n in range(200):  # seen over 2 s: one window
        notices.add([change("opened", "fatal", f"web{n % 4}", f"p{n}", n * 0.01)], n * 0.01)
    [notice] = notices.due(10.0)
    assert notice.title == "[raptor] fatal: 200 incidents on 4 hosts"
    assert notice.body.count("\n- ") == 20 and "... and 180 more" in notice.body
    assert len(notice.keys) == 200


def test_the_rate_limit_holds_back_and_then_tells_what_it_held() -> None:
    notices = Notices(config(rate_limit=2, rate_per=60.0))
    notices.add([change("opened", rule, "web1", at=0.0) for rule in ("fatal", "stale", "duplicate", "discarded")], 0.0)
    sent = notices.due(10.0)
    assert [n.title for n in sent] == ["[raptor] fatal: web1", "[raptor] stale: web1"]
    assert notices.pending() == 2
    assert notices.due(30.0) == []  # still two sent in the last minute
    [summary] = notices.due(70.0)
    assert summary.what == "suppressed" and summary.title == "[raptor] 2 more suppressed"
    assert "1 opened (discarded)" in summary.body and "1 opened (duplicate)" in summary.body
    assert set(summary.keys) == {("duplicate", "web1", ""), ("discarded", "web1", "")}
    assert notices.pending() == 0


def test_resolved_and_reminders_are_said_so() -> None:
    notices = Notices(config())
    notices.add([change("resolved", "stale", "web1", at=0.0), change("reminded", "fatal", "web2", "api", at=0.0)], 0.0)
    titles: List[str] = sorted(n.title for n in notices.due(10.0))
    assert titles == ["[raptor] REMINDER fatal: web2 api", "[raptor] RESOLVED stale: web1"]


def test_names_from_redis_are_escaped_and_links_encoded() -> None:
    notices = Notices(config())
    notices.add([change("opened", "fatal", "web1\x1b[2J", "a&b <x>\n", 0.0)], 0.0)
    [notice] = notices.due(10.0)
    assert "\x1b" not in notice.title + notice.body and "\n" not in notice.title
    assert "process=a%26b+%3Cx%3E%0A" in notice.body


def test_what_is_not_told_yet_survives_in_another_alerter() -> None:
    first = Notices(config(rate_limit=1, rate_per=60.0))
    first.add([change("opened", "fatal", "web1", "api", 0.0), change("opened", "stale", "web2", at=0.0)], 0.0)
    assert len(first.due(10.0)) == 1  # the other is held by the rate limit
    first.add([change("opened", "duplicate", "db1", "db2", 20.0)], 20.0)
    second = Notices(config(rate_limit=1, rate_per=60.0))
    second.loads(first.dumps())
    assert second.pending() == first.pending() == 2
    assert second.due(30.0) == []  # the limit's memory came along too: the duplicate is held
    [summary] = second.due(70.0)
    assert summary.what == "suppressed" and summary.title == "[raptor] 2 more suppressed"
    assert "1 opened (stale)" in summary.body and "1 opened (duplicate)" in summary.body
    assert second.pending() == 0


def test_under_a_storm_that_lasts_the_summary_still_goes_out_and_its_memory_stays_bounded() -> None:
    """A new group every second for ten minutes against 2 notices a minute: each time the
    limit frees a slot, the summary of what was held takes it first; every change is told
    or counted exactly once, and the held-back keys never outgrow their bound."""
    rules = tuple(Rule(f"r{n}", "fatal", Match(), ("ops",), 3600.0) for n in range(600))
    targets = {"ops": Target("ops", "json://x")}
    notices = Notices(AlertConfig(targets=targets, rules=rules, group_window=0.0, rate_limit=2, rate_per=60.0))
    told = counted = 0
    summaries: List[float] = []
    longest_held = 0
    for second in range(600):
        notices.add([change("opened", f"r{second}", "web1", f"p{second}", float(second))], float(second))
        for notice in notices.due(float(second)):
            if notice.what == "suppressed":
                summaries.append(float(second))
                counted += int(notice.title.split()[1])
            else:
                told += 1
        longest_held = max(longest_held, len(notices._held_keys))  # the state saved at each step
    assert told + counted + notices.pending() == 600
    assert len(summaries) >= 9 and max(b - a for a, b in zip(summaries, summaries[1:])) <= 60.0
    assert longest_held <= 60  # a minute's worth, never the whole storm


def test_a_summary_counts_every_change_held_and_names_at_most_a_thousand() -> None:
    notices = Notices(config(rate_limit=1, rate_per=60.0, group_window=0.0))
    notices.add([change("opened", "stale", "web1")], 0.0)
    notices.add([change("opened", "fatal", f"web{n}", "p") for n in range(1500)], 0.0)
    [first] = notices.due(0.0)  # the one slot, to the first group; the 1,500 are held
    [summary] = notices.due(60.0)
    assert first.title == "[raptor] stale: web1"
    assert summary.title == "[raptor] 1500 more suppressed" and len(summary.keys) == 1000


def test_next_due_says_when_a_group_or_the_held_summary_can_go() -> None:
    notices = Notices(config(rate_limit=1, rate_per=60.0))
    assert notices.next_due() is None
    notices.add([change("opened", "fatal", "web1", "api")], 100.0)
    assert notices.next_due() == 110.0  # the group's window
    notices.add([change("opened", "stale", "web2")], 105.0)
    [_] = notices.due(115.0)  # fatal goes; stale is held by the limit
    assert notices.next_due() == 175.0  # when the limit frees its slot
    [summary] = notices.due(175.0)
    assert summary.what == "suppressed" and notices.next_due() is None
