"""raptor alert's config file: read once, every problem one line naming its key, no
notification URL (they hold secrets) in any message or log. Apprise itself checks the URLs."""

from __future__ import annotations

import io
import logging
import textwrap
from pathlib import Path
from typing import List

import pytest

from raptor.alert.config import KINDS, AlertConfig, ConfigErrors, Match, parse
from raptor.consumer.cli import main

SECRET = "s3cr3t-pa55word"
GOOD = f"""
notify:
  ops-mail: "mailtos://alerts:{SECRET}@smtp.example.com?to=ops@example.com"
  hook: "json://127.0.0.1:8099/hook"
web_url: https://raptor.example.com/ops
remind_every: 2h
rate_limit: {{max: 10, per: 5m}}
rules:
  - kind: fatal
  - kind: crash_loop
    hosts: "web*"
    starts: 3
    within: 5m
    notify: hook
  - name: db-down
    kind: not_running
    apps: [postgres]
    programs: ["postgres-*"]
    after: 90
    remind_every: 0
  - kind: stale
"""


def problems_of(text: str) -> List[str]:
    with pytest.raises(ConfigErrors) as caught:
        parse(textwrap.dedent(text))
    return caught.value.problems


def test_a_good_file_gives_every_setting_with_the_defaults_filled_in() -> None:
    config = parse(GOOD)
    assert isinstance(config, AlertConfig)
    assert sorted(config.targets) == ["hook", "ops-mail"]
    assert config.web_url == "https://raptor.example.com/ops/"
    assert (config.remind_every, config.rate_limit, config.rate_per, config.group) == (7200, 10, 300, "raptor-alert")
    fatal, loop, db, stale = config.rules
    assert (fatal.name, fatal.notify, fatal.remind_every) == ("fatal", ("ops-mail", "hook"), 7200)
    assert (loop.starts, loop.within, loop.notify, loop.match) == (3, 300, ("hook",), Match(hosts=("web*",)))
    assert (db.name, db.after, db.remind_every) == ("db-down", 90, 0)
    assert stale.after == 120  # 2 x TICK_60
    assert SECRET not in repr(config)  # a target's URL is kept out of its repr


def test_every_problem_is_one_line_naming_its_key() -> None:
    found = problems_of(
        """
        notify:
          ops: "nosuch://user:pw@host"
          "bad name": "json://127.0.0.1/"
        colour: blue
        "redis://:pw@h/0": x
        web_url: "https://raptor.example/?token=x"
        rate_limit: {max: 0, per: soon}
        rules:
          - kind: fatal
            notify: pager
          - kind: crash_loop
            starts: 1
            within: 10x
            after: 5m
          - kind: not_running
          - kind: explode
          - name: fatal
            kind: fatal
            hosts: [1, 2]
        """
    )
    assert found == [
        "colour: unknown key (known: notify, rules, web_url, group, remind_every, rate_limit, group_window)",
        "(a key that is not a name: not shown): unknown key (known: notify, rules, web_url, group, remind_every, "
        "rate_limit, group_window)",
        "notify.ops: Apprise cannot use this URL (scheme 'nosuch'): an unknown scheme, or a host, user, password or "
        "option it rejects",
        "notify: 'bad name' is not a target name (letters, digits, '.', '_', '-')",
        "web_url: must be raptor web's address without ? or # (the links add their own query)",
        "rate_limit.max: must be a whole number of notices, 1 or more",
        "rate_limit.per: 'soon' is not a duration (30s, 10m, 2h, 1d, or seconds)",
        "rules[0].notify: 'pager' is not a target under notify:",
        "rules[1].starts: must be a whole number, 2 or more",
        "rules[1].within: '10x' is not a duration (30s, 10m, 2h, 1d, or seconds)",
        "rules[1].after: a crash_loop rule has no such setting",
        "rules[2].after: required for a not_running rule (30s, 10m, 2h, 1d)",
        "rules[3].kind: must be one of " + ", ".join(KINDS),
        "rules[4].hosts: must be a name or a list of names",
        "rules[4].name: 'fatal' also names rules[0] (give each a name)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file: must be a mapping with notify: and rules:"),
        ("rules: [\n", "line 2: not valid YAML"),
        ("notify: {}\nrules: []", "notify: must name at least one target"),
    ],
)
def test_a_file_that_is_not_a_config_says_so(text: str, expected: str) -> None:
    assert problems_of(text)[0].startswith(expected)


def test_apprise_never_logs_a_url_it_refuses(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    found = problems_of(f'notify: {{m: "mailtos://alerts:{SECRET}@"}}\nrules: [{{kind: fatal}}]')
    assert found[0].startswith("notify.m: Apprise cannot use this URL (scheme 'mailtos')")
    assert SECRET not in caplog.text and SECRET not in "\n".join(found)
    assert "mailtos://" not in caplog.text


@pytest.mark.parametrize(
    ("match", "host", "app", "program", "expected"),
    [
        (Match(), "any", None, None, True),
        (Match(hosts=("web*",)), "web1", None, "p", True),
        (Match(hosts=("web*",)), "db1", None, "p", False),
        (Match(apps=("node",)), "web1", "node", "p", True),
        (Match(apps=("node",)), "web1", None, "p", False),
        (Match(programs=("api-*",)), "web1", None, "api-1", True),
        (Match(programs=("api-*",)), "web1", None, None, False),  # a host-level event: not a program's
        (Match(hosts=("Web1",)), "web1", None, None, False),  # globs are case-sensitive, as host names are
    ],
)
def test_a_rule_matches_by_host_glob_app_and_program_glob(
    match: Match, host: str, app: str, program: str, expected: bool
) -> None:
    assert match.matches(host, app, program) is expected


def test_host_rules_take_no_program_filter_and_a_url_in_the_wrong_place_is_not_repeated() -> None:
    found = problems_of(
        f"""
        notify: {{ops: "json://127.0.0.1/"}}
        rules:
          - {{kind: stale, apps: [billing]}}
          - {{kind: fatal, notify: "mailtos://u:{SECRET}@smtp.example.com"}}
        """
    )
    assert found == [
        "rules[0].apps: a stale rule is about hosts; filter it by hosts: only",
        "rules[1].notify: a value that is not a target name is not a target under notify:",
    ]


def test_check_reads_the_file_without_redis_and_names_each_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``raptor alert --check``: what the role's validate: runs before it installs a file."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    good, bad = tmp_path / "good.yml", tmp_path / "bad.yml"
    good.write_text(GOOD)
    bad.write_text(GOOD.replace("kind: stale", "kind: stail").replace("remind_every: 2h", "remind_every: soon"))
    out, err = io.StringIO(), io.StringIO()
    assert main(["alert", "--check", "--config", str(good)], out, err) == 0
    assert out.getvalue() == f"{good}: good: 4 rules, 2 targets\n" and err.getvalue() == ""
    out, err = io.StringIO(), io.StringIO()
    assert main(["alert", "--check", "--config", str(bad)], out, err) == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"raptor alert: {bad}: ") for line in lines)
    assert "remind_every" in lines[0] and "rules[3].kind" in lines[1]
    assert SECRET not in out.getvalue() + err.getvalue()
    err = io.StringIO()
    assert main(["alert", "--check", "--config", str(tmp_path / "none.yml")], io.StringIO(), err) == 2
    assert "none.yml: cannot read it" in err.getvalue()
