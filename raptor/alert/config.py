"""``raptor alert --config alert.yml``: the file, read and checked once at start.

Every problem found is reported, one line each, naming the key (``rules[2].within: ...``),
and none of them holds a notification URL: those carry passwords and tokens. Targets
are named (``notify: {ops-mail: "mailtos://..."}``) so that logs and messages can say
which one without showing it. Apprise checks each URL; what it logs while doing so
(the URL, secrets included) is captured, not logged.

Pure: :func:`parse` takes the YAML text and the names of the environment it may read;
nothing here talks to Redis or a notification service.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import yaml

from ..durations import EXAMPLES, parse_duration

# Each rule kind, with its settings and their defaults (None: required).
KINDS: Dict[str, Dict[str, Any]] = {
    "fatal": {},  # a process entered FATAL
    "unexpected_exit": {},  # EXITED that supervisord did not expect
    "crash_loop": {"starts": 5, "within": "10m"},  # N crashes (BACKOFF or EXITED) within M
    "stale": {"after": "120s"},  # a host's snapshot not refreshed for that long (2 x TICK_60)
    "duplicate": {},  # two names of one supervisord
    "discarded": {},  # the listener reports events discarded by supervisord
    "not_running": {"after": None},  # a process that should run has not been RUNNING for T
}
DURATION_SETTINGS = ("within", "after")
HOST_KINDS = ("stale", "duplicate", "discarded")
TOP_LEVEL = ("notify", "rules", "web_url", "group", "remind_every", "rate_limit", "group_window")
RULE_KEYS = (
    "name", "kind", "hosts", "apps", "programs", "notify", "remind_every", "resolve_after", "starts", "within", "after",
)  # fmt: skip
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ConfigErrors(ValueError):
    """The config file's problems, one line each (``str()`` joins them)."""

    def __init__(self, problems: List[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Target:
    """A notification target: its name, and the Apprise URL (never in a repr or a log)."""

    name: str
    url: str = field(repr=False)


@dataclass(frozen=True)
class Match:
    """Which processes a rule watches: host and program globs, app names; empty: all."""

    hosts: Tuple[str, ...] = ()
    apps: Tuple[str, ...] = ()
    programs: Tuple[str, ...] = ()

    def matches(self, host: str, app: Optional[str] = None, program: Optional[str] = None) -> bool:
        if self.hosts and not any(fnmatch.fnmatchcase(host, glob) for glob in self.hosts):
            return False
        if self.apps and app not in self.apps:
            return False
        return not self.programs or (
            program is not None and any(fnmatch.fnmatchcase(program, glob) for glob in self.programs)
        )


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    match: Match
    notify: Tuple[str, ...]  # target names
    remind_every: float  # seconds; 0: no reminders
    starts: int = 0  # crash_loop: crashes (incidents.crashed) that make a loop
    within: float = 0.0  # crash_loop, seconds
    after: float = 0.0  # stale, not_running, seconds
    # fatal, unexpected_exit: RUNNING this long before the incident is resolved, so that a
    # process that crashes again a little after each start stays one incident
    resolve_after: float = 60.0


@dataclass(frozen=True)
class AlertConfig:
    targets: Dict[str, Target]
    rules: Tuple[Rule, ...]
    web_url: Optional[str] = None  # raptor web's address, for links in the notices
    group: str = "raptor-alert"  # the consumer group on the fleet stream
    remind_every: float = 3600.0
    rate_limit: int = 30  # notices at most per rate_per; the rest summed up in one
    rate_per: float = 60.0
    group_window: float = 10.0  # notices of one rule this close are sent as one


def parse(text: str, check_url: Optional[Any] = None) -> AlertConfig:
    """The config in *text* (YAML), or :class:`ConfigErrors` listing every problem.
    *check_url*: ``url -> problem or None`` (default: :func:`apprise_problem`)."""
    problems: List[str] = []
    check = check_url or apprise_problem
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "the file"
        # The parser's problem only, not its message: that quotes the line, which may hold a URL.
        raise ConfigErrors([f"{where}: not valid YAML ({getattr(exc, 'problem', None) or 'unreadable'})"]) from None
    if not isinstance(data, dict):
        raise ConfigErrors(["the file: must be a mapping with notify: and rules:"])
    for key in data:
        if key not in TOP_LEVEL:
            problems.append(f"{_shown(key)}: unknown key (known: {', '.join(TOP_LEVEL)})")

    targets = _targets(data.get("notify"), problems, check)
    settings = _settings(data, problems)
    remind = settings["remind_every"]
    rules = _rules(data.get("rules"), targets, remind, problems)
    if problems:
        raise ConfigErrors(problems)
    return AlertConfig(targets=targets, rules=tuple(rules), **settings)


def _settings(data: Mapping[str, Any], problems: List[str]) -> Dict[str, Any]:
    """The top level's settings but notify: and rules:."""
    settings: Dict[str, Any] = {
        "remind_every": _duration(data, "remind_every", "1h", "remind_every", problems, allow_zero=True),
        "group_window": _duration(data, "group_window", "10s", "group_window", problems, allow_zero=True),
    }
    if "web_url" in data:
        url = data["web_url"]
        if not isinstance(url, str) or not re.fullmatch(r"https?://[^\s]+", url):
            problems.append("web_url: must be raptor web's http:// or https:// address")
        elif re.search(r"[?#]", url):  # the links add a query of their own
            problems.append("web_url: must be raptor web's address without ? or # (the links add their own query)")
        else:
            settings["web_url"] = url.rstrip("/") + "/"
    if "group" in data:
        if not isinstance(data["group"], str) or not NAME.fullmatch(data["group"]):
            problems.append("group: must be a name of letters, digits, '.', '_' or '-'")
        else:
            settings["group"] = data["group"]
    rate = data.get("rate_limit", {"max": 30, "per": "1m"})
    if not isinstance(rate, dict) or set(rate) - {"max", "per"}:
        problems.append("rate_limit: must be a mapping of max: (notices) and per: (a duration)")
        return settings
    count = rate.get("max", 30)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        problems.append("rate_limit.max: must be a whole number of notices, 1 or more")
    else:
        settings["rate_limit"] = count
    settings["rate_per"] = _duration(rate, "per", "1m", "rate_limit.per", problems)
    return settings


def _targets(raw: Any, problems: List[str], check: Any) -> Dict[str, Target]:
    targets: Dict[str, Target] = {}
    if not isinstance(raw, dict) or not raw:
        problems.append("notify: must name at least one target, e.g. notify: {ops: 'mailtos://...'}")
        return targets
    for name, url in raw.items():
        key = f"notify.{name}"
        if not isinstance(name, str) or not NAME.fullmatch(name):
            problems.append(f"notify: {_shown(name)} is not a target name (letters, digits, '.', '_', '-')")
            continue
        if not isinstance(url, str) or not url.strip():
            problems.append(f"{key}: must be an Apprise URL (a string)")
            continue
        problem = check(url)
        if problem:
            problems.append(f"{key}: {problem}")
            continue
        targets[name] = Target(name, url)
    return targets


def _rules(raw: Any, targets: Mapping[str, Target], remind: float, problems: List[str]) -> List[Rule]:
    rules: List[Rule] = []
    if not isinstance(raw, list) or not raw:
        problems.append(f"rules: must be a list of rules, each with a kind ({', '.join(KINDS)})")
        return rules
    names: Dict[str, str] = {}
    for index, item in enumerate(raw):
        rule = _rule(f"rules[{index}]", item, targets, remind, problems)
        if rule is None:
            continue
        if rule.name in names:
            problems.append(f"rules[{index}].name: {rule.name!r} also names {names[rule.name]} (give each a name)")
        names.setdefault(rule.name, f"rules[{index}]")
        rules.append(rule)
    return rules


def _shown(key: Any) -> str:
    """A key of the file as a message may show it: a URL pasted where a name belongs
    would carry its password into the log (and the role's output)."""
    if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9._ -]{1,64}", key):
        return key if NAME.fullmatch(key) else repr(key)
    return "(a key that is not a name: not shown)"


def _rule(key: str, item: Any, targets: Mapping[str, Target], remind: float, problems: List[str]) -> Optional[Rule]:
    if not isinstance(item, dict):
        problems.append(f"{key}: must be a mapping with kind:")
        return None
    for unknown in [k for k in item if k not in RULE_KEYS]:
        problems.append(f"{key}.{_shown(unknown)}: unknown key (known: {', '.join(RULE_KEYS)})")
    kind = item.get("kind")
    if kind not in KINDS:
        problems.append(f"{key}.kind: must be one of {', '.join(KINDS)}")
        return None
    name = item.get("name", kind)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        problems.append(f"{key}.name: must be a name of letters, digits, '.', '_' or '-'")
        return None
    if kind in HOST_KINDS:
        for name_ in ("apps", "programs"):
            if name_ in item:
                problems.append(f"{key}.{name_}: a {kind} rule is about hosts; filter it by hosts: only")
    match = Match(
        hosts=_globs(item, "hosts", key, problems),
        apps=_globs(item, "apps", key, problems),
        programs=_globs(item, "programs", key, problems),
    )
    notify = _globs(item, "notify", key, problems) or tuple(targets)
    for target in notify:
        if target not in targets:
            # Only a name is repeated: a URL pasted here would hold its secrets.
            shown = repr(target) if NAME.fullmatch(target) else "a value that is not a target name"
            problems.append(f"{key}.notify: {shown} is not a target under notify:")
    remind_every = _duration(item, "remind_every", remind, f"{key}.remind_every", problems, allow_zero=True)
    settle = _duration(item, "resolve_after", "60s", f"{key}.resolve_after", problems, allow_zero=True)
    settings = _kind_settings(key, kind, item, problems)
    return Rule(name, kind, match, notify, remind_every, resolve_after=settle, **settings)


def _kind_settings(key: str, kind: str, item: Mapping[str, Any], problems: List[str]) -> Dict[str, Any]:
    """A rule's own settings (starts, within, after), checked against its kind's."""
    defaults = KINDS[kind]
    values: Dict[str, Any] = {}
    for setting in ("starts", *DURATION_SETTINGS):
        if setting not in defaults:
            if setting in item:
                problems.append(f"{key}.{setting}: a {kind} rule has no such setting")
            continue
        if defaults[setting] is None and setting not in item:
            problems.append(f"{key}.{setting}: required for a {kind} rule ({EXAMPLES})")
        elif setting == "starts":
            starts = item.get("starts", defaults["starts"])
            if not isinstance(starts, int) or isinstance(starts, bool) or starts < 2:
                problems.append(f"{key}.starts: must be a whole number, 2 or more")
            else:
                values["starts"] = starts
        else:
            values[setting] = _duration(item, setting, defaults[setting], f"{key}.{setting}", problems)
    return values


def _globs(item: Mapping[str, Any], name: str, key: str, problems: List[str]) -> Tuple[str, ...]:
    value = item.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{key}.{name}: must be a name or a list of names")
        return ()
    return tuple(value)


def _duration(
    item: Mapping[str, Any], name: str, default: Any, key: str, problems: List[str], *, allow_zero: bool = False
) -> float:
    value = item.get(name, default)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)  # a bare number: seconds
    else:
        try:
            seconds = parse_duration(str(value))
        except ValueError:
            problems.append(f"{key}: {str(value)[:40]!r} is not a duration ({EXAMPLES}, or seconds)")
            return 0.0
    if seconds < 0 or (seconds == 0 and not allow_zero):
        problems.append(f"{key}: must be more than 0")
        return 0.0
    return seconds


@contextlib.contextmanager
def apprise_silenced() -> Iterator[None]:
    """Apprise's logger off for the block: its messages quote the URLs it is given,
    passwords and tokens included. (The alerter hands Apprise a URL on one thread.)"""
    logger = logging.getLogger("apprise")
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


def apprise_problem(url: str) -> Optional[str]:
    """Why Apprise cannot use *url*, without the URL (it holds secrets), or None."""
    import apprise  # noqa: PLC0415 (the alert extra; imported when a config is read)

    with apprise_silenced():  # and its words are not repeated here either
        accepted = apprise.Apprise().add(url)
    if accepted:
        return None
    scheme = url.split("://", 1)[0][:20] if "://" in url else ""
    return (
        f"Apprise cannot use this URL (scheme {scheme!r}): an unknown scheme, or a host, user, password or "
        "option it rejects"
    )
