"""``raptor``: the fleet as the publishers put it in Redis.

raptor status  [--json] [--host GLOB] [--app NAME]  one row per host; exit 1 on duplicates
raptor watch   [--host GLOB] [--app NAME]           live full-screen view
raptor tail    [--since 10m|2h|1d|30s|ENTRY_ID] [--event GLOB] [--host GLOB] [--count N]
               [--format json|line]                 transitions as they happen
raptor history HOST [PROGRAM] [--since 24h|ENTRY_ID] [--json]
                                                    one host's transitions, restarts, crashes
raptor web     [--bind 127.0.0.1] [--port 8642] [--root-path /PREFIX] [--token-file F | --no-auth]
                                                    the live dashboard (raptor.web)

Exit codes: 0 ok, 1 duplicate hosts (status) or unknown host (history), 2 bad
configuration or Redis unreachable (one line on stderr).

``tail`` and ``watch`` read the history stream (``proc_history``): after Redis went
away they resume after the last entry they read, so they lose nothing unless
retention trimmed it first, which ``tail`` then says on stderr (how many entries).
``tail`` starts at the end (live only) unless given ``--since``: a duration back from
now (Redis' clock) or an entry id (from it on; ``(ID`` for after it), and runs until
interrupted or until it has printed ``--count`` lines. ``history`` reads
``host_history:<HOST>`` only. ``status`` counts each host's restarts of the last hour
from the same streams (RESTARTS; see :mod:`raptor.consumer.history` for what counts).

Everything printed that comes from Redis has its control characters escaped
(:mod:`raptor.consumer.text`). :func:`main` takes its streams and, for callers that run
it in a thread, a ``stop`` event that ends ``tail`` and ``watch`` cleanly.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, TextIO, Tuple

import redis

from .. import __version__, keys
from ..config import ConfigError, redact_url, validate_redis_url
from ..durations import parse_duration
from ..messages import HISTORY_FIELDS
from ..names import parse_proc_name
from .fleet import Duplicate, Fleet, Host, describe_duplicate, state_order
from .follow import Follower, make_client
from .history import Transition, analyze, clock, iso, process_label, report, select
from .stream import (
    EntryDecoder,
    Gap,
    StreamReader,
    collector_paused,
    history_client,
    id_at,
    id_before,
    id_time,
    parse_id,
    read_range,
    read_ranges,
    server_time,
)
from .text import json_text, printable

EXIT_OK, EXIT_DUPLICATES, EXIT_ERROR = 0, 1, 2
EXIT_UNKNOWN_HOST = 1
# `raptor history` reads the host's history back from a window's start for the state each
# process of the window was in then: in slices going back, each EARLIER_GROWTH times longer
# than the one before (the first EARLIER_FIRST_S), XRANGE only (the readers' ACL), and no
# more than EARLIER_LIMIT entries (ten times a host's default retention): beyond, unknown.
EARLIER_FIRST_S = 60.0
EARLIER_GROWTH = 4
EARLIER_LIMIT = 50_000


@dataclass
class Context:
    """What a command works with besides its arguments."""

    client: redis.Redis
    out: TextIO
    err: TextIO
    stop: Optional[threading.Event] = None  # set: tail and watch return


def _age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def _table(rows: List[List[str]], out: TextIO) -> None:
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n")


# -- restarts of the last hour (status) ------------------------------------------------------

RESTARTS_WINDOW = 3600.0


# Where the publisher's entries have their name and group (raptor.messages.HISTORY_FIELDS).
_NAME, _GROUP = 2 * HISTORY_FIELDS.index("name") + 1, 2 * HISTORY_FIELDS.index("group") + 1


def _about(flat: Sequence[bytes], program: bytes) -> bool:
    """Whether the entry *flat*, as a raw client reads it, is about *program* (``name``
    or ``group:name``): read before anything is made of it, so a query for one process
    decodes only its entries."""
    if flat[_NAME - 1] == b"name" and flat[_GROUP - 1] == b"group":
        name, group = flat[_NAME], flat[_GROUP]
    else:  # not laid out as the publisher writes: read it as a mapping
        pairs = iter(flat)
        fields = dict(zip(pairs, pairs))
        name, group = fields.get(b"name", b""), fields.get(b"group", b"")
    return program == name or (group not in (b"", name) and program == group + b":" + name)


def transitions_of(entries: Iterable[Tuple[Any, Sequence[Any]]], program: Optional[str] = None) -> List[Transition]:
    """History entries (:func:`~raptor.consumer.stream.read_range`'s) as transitions;
    entries that are not raptor's are skipped. With *program*, only its entries, read
    with a raw client (``history_client(raw=True)``): the others are never decoded."""
    found = []
    decode = EntryDecoder()
    wanted = None if program is None else program.encode("utf-8", "surrogateescape")
    for raw_id, raw_flat in entries:
        try:
            entry_id, flat = raw_id, raw_flat
            if wanted is not None:
                if not _about(raw_flat, wanted):
                    continue
                entry_id = raw_id.decode()
                flat = [part.decode("utf-8", "replace") for part in raw_flat]
            message = decode.flat(flat)
            found.append(Transition.from_message(entry_id, message, id_time(entry_id)))
        except (KeyError, ValueError, TypeError, IndexError, AttributeError):
            continue
    return found


def recent_restarts(
    client: redis.Redis, hosts: Sequence[str], now: float, app: Optional[str] = None
) -> Dict[str, Dict[str, int]]:
    """Per host, per process: restarts within the last hour (one pipelined XRANGE per
    host); with *app*, only the processes of that app_name."""
    since = now - RESTARTS_WINDOW
    with collector_paused():
        entries = read_ranges(history_client(client), {keys.history_key(host): id_at(since) for host in hosts})
    found: Dict[str, Dict[str, int]] = {}
    for host in hosts:
        transitions = transitions_of(entries[keys.history_key(host)])
        if app is not None:
            transitions = [t for t in transitions if parse_proc_name(t.name).app_name == app]
        found[host] = {p: s.restarts for p, s in analyze(transitions, since, now).items()}
    return found


def print_status(
    hosts: List[Host],
    duplicates: List[Duplicate],
    *,
    detail: bool,
    out: TextIO,
    now: float,
    restarts: Optional[Mapping[str, Mapping[str, int]]] = None,
) -> None:
    restarts = restarts or {}
    if not hosts:
        out.write("no hosts publish to this Redis (no host_procs:* keys)\n")
    else:
        states = sorted({s for h in hosts for s in h.counts()}, key=state_order)
        rows = [["HOST", "PROCS", *states, "RESTARTS", "REFRESHED", "STATUS"]]
        for host in hosts:
            counts = host.counts()
            status = "STALE" if host.stale(now) else "ok"
            restarted = str(sum(restarts.get(host.name, {}).values()))
            rows.append(
                [
                    host.name,
                    str(len(host.procs)),
                    *(str(counts.get(s, 0)) for s in states),
                    restarted,
                    _age(host.age(now)),
                    status,
                ]
            )
        _table(rows, out)
        if detail:
            out.write("\n")
            rows = [["HOST", "PROCESS", "STATE", "PID", "RESTARTS", "DESCRIPTION"]]
            for host in hosts:
                by_process = restarts.get(host.name, {})
                for name in sorted(host.procs):
                    proc = host.procs[name]
                    pid = str(proc.get("pid") or "-")
                    label = process_label(name, str(proc.get("group") or ""))
                    restarted = str(by_process.get(label, 0))
                    rows.append(
                        [host.name, name, str(proc.get("statename")), pid, restarted, str(proc.get("description", ""))]
                    )
            _table(rows, out)
    for duplicate in duplicates:
        out.write(printable(describe_duplicate(duplicate)) + "\n")


def status_report(
    client: redis.Redis, host: Optional[str] = None, app: Optional[str] = None, *, exact: bool = False
) -> Dict[str, Any]:
    """``raptor status --json`` (and ``raptor web``'s ``/api/fleet``): every host, or those
    matching the glob *host* (with *exact*, the one host of that name), with their
    processes (of *app* only, when given), each host's restarts of the last hour, and the
    duplicate pairs."""
    fleet = Fleet()
    if exact and host is not None:
        fleet.load(client, [host])
        hosts = fleet.select(None, app)
    else:
        fleet.load(client)
        hosts = fleet.select(host, app)
    duplicates = fleet.find_duplicates()
    restarts = recent_restarts(client, [h.name for h in hosts], server_time(client), app)
    report = Fleet.as_json(hosts, duplicates, time.time())
    for record in report["hosts"]:
        by_process = restarts.get(record["host"], {})
        record["restarts_1h"] = sum(by_process.values())
        record["process_restarts_1h"] = {p: n for p, n in sorted(by_process.items()) if n}
    return report


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    if args.json:
        report = status_report(ctx.client, args.host, args.app)
        ctx.out.write(json_text(report, indent=2) + "\n")
        return EXIT_DUPLICATES if report["duplicates"] else EXIT_OK
    fleet = Fleet()
    fleet.load(ctx.client)
    hosts = fleet.select(args.host, args.app)
    duplicates = fleet.find_duplicates()
    restarts = recent_restarts(ctx.client, [h.name for h in hosts], server_time(ctx.client), args.app)
    detail = bool(args.host or args.app)
    print_status(hosts, duplicates, detail=detail, out=ctx.out, now=time.time(), restarts=restarts)
    return EXIT_DUPLICATES if duplicates else EXIT_OK


# -- tail -----------------------------------------------------------------------------------


def format_line(message: Dict[str, Any]) -> str:
    """One human-readable line: time, host, process, transition, pid (control characters escaped)."""
    when = str(message.get("now") or message.get("time") or "")[11:19]
    event = str(message.get("event", ""))
    if event == "PROCESS_GROUP_REMOVED":
        change = "removed"
    else:
        before = message.get("from_state") or "?"
        change = f"{before} -> {message.get('statename')}"
        if message.get("pid"):
            change += f" (pid {message['pid']})"
    resync = "  [resync]" if message.get("resync") else ""
    return printable(f"{when}  {message.get('host')}  {message.get('name')}  {change}{resync}")


def since_argument(text: str) -> Tuple[str, Any]:
    """``--since``: ("duration", seconds) for 10m/2h/1d/30s, ("id", position) for an entry
    id (the position just before it; ``(ID``: the id itself, i.e. after it)."""
    try:
        return "duration", parse_duration(text)
    except ValueError:
        pass
    try:
        if text.startswith("("):
            parse_id(text[1:])
            return "id", text[1:]
        return "id", id_before(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a duration (30s, 10m, 2h, 1d) or a history entry id (1732454302000-0)"
        ) from None


def since_position(client: redis.Redis, since: Tuple[str, Any], now: Optional[float] = None) -> str:
    """The position to read after, for a parsed ``--since`` (a duration back from *now*,
    by default Redis' clock)."""
    kind, value = since
    if kind == "duration":
        return id_before(id_at((server_time(client) if now is None else now) - float(value)))
    return str(value)


def cmd_tail(args: argparse.Namespace, ctx: Context) -> int:
    printed = 0
    start = since_position(ctx.client, args.since) if args.since else None
    reader = StreamReader(ctx.client, keys.FLEET_HISTORY, start=start)
    went_down = False

    def on_message(message: Dict[str, Any], entry_id: str) -> None:
        nonlocal printed
        if args.count is not None and printed >= args.count:
            return
        if args.event and not fnmatch.fnmatchcase(str(message.get("event", "")), args.event):
            return
        if args.host and not fnmatch.fnmatchcase(str(message.get("host") or ""), args.host):
            return
        if args.format == "line":
            ctx.out.write(format_line(message) + "\n")
        else:
            ctx.out.write(json_text({**message, "entry_id": entry_id}) + "\n")
        ctx.out.flush()
        printed += 1

    def on_gap(gap: Gap) -> None:
        ctx.err.write(f"raptor tail: {printable(gap.describe())}\n")
        ctx.err.flush()

    def on_skip(entry_id: str, error: Exception) -> None:
        if reader.unparsed == 1:
            what = printable(f"{entry_id}, {type(error).__name__}: {error}")
            ctx.err.write(f"raptor tail: skipping history entries that are not raptor's (the first: {what})\n")
            ctx.err.flush()

    def on_state(connected: bool) -> None:
        nonlocal went_down
        if not connected:
            ctx.err.write(f"raptor tail: Redis unreachable ({printable(reader.last_error)}), reconnecting\n")
            went_down = True
        elif went_down:
            ctx.err.write("raptor tail: reconnected to Redis\n")
        ctx.err.flush()

    reader.run(
        on_message,
        on_gap=on_gap,
        on_skip=on_skip,
        on_state=on_state,
        should_stop=lambda: args.count is not None and printed >= args.count,
        stop=ctx.stop,
    )
    if reader.unparsed > 1:
        ctx.err.write(f"raptor tail: {reader.unparsed} history entries skipped in all\n")
    return EXIT_OK


# -- history ----------------------------------------------------------------------------------


def _when(epoch: float) -> str:
    return iso(epoch)[:19].replace("T", " ")


def print_history(
    host: str,
    program: Optional[str],
    transitions: Sequence[Transition],
    *,
    since: float,
    until: float,
    earlier: Mapping[str, Transition],
    out: TextIO,
) -> None:
    what = f"{host} {program}" if program else host
    out.write(printable(f"{what}: {len(transitions)} transitions from {_when(since)} to {_when(until)} UTC") + "\n\n")
    rows = [["TIME", "PROCESS", "TRANSITION", "PID", "EXIT"]]
    for t in transitions:
        if t.to_state is None:
            change = "removed"
        else:
            change = f"{t.from_state or '?'} -> {t.to_state}" + ("  [resync]" if t.resync else "")
        exit_status = ""
        if t.to_state == "EXITED":
            said = {True: " (expected)", False: " (unexpected)", None: ""}[t.expected]
            exit_status = f"{t.exitstatus}{said}"
        rows.append([_when(t.at), t.process, change, str(t.pid or "-"), exit_status])
    _table(rows, out)
    out.write("\n")
    summaries = analyze(transitions, since, until, earlier)
    rows = [["PROCESS", "RESTARTS", "CRASHES", "NOT RUNNING", "STATE"]]
    for name in sorted(summaries):
        s = summaries[name]
        rows.append([name, str(s.restarts), str(s.crashes), clock(s.not_running_s), s.state or "-"])
    _table(rows, out)


def history_report(
    client: redis.Redis, host: str, program: Optional[str], since: Tuple[str, Any]
) -> Optional[Tuple[List[Transition], float, float, Dict[str, Transition]]]:
    """One host's transitions (of *program* only, when given) from *since* (a parsed
    ``--since``) to now, with the window's two epochs and, per process of the window, its
    last transition before it (:func:`earlier_transitions`); None for a host this Redis
    has no trace of. ``raptor history`` and ``raptor web``'s ``/api/history``."""
    key = keys.history_key(host)
    if not client.exists(key, keys.snapshot_key(host), keys.meta_key(host)):
        return None
    until = server_time(client)
    position = since_position(client, since, until)
    start_epoch = max(0.0, id_time(position)) if since[0] == "id" else until - float(since[1])
    start = "(" + position if position != "0-0" else "-"
    with collector_paused():
        reader = history_client(client, raw=program is not None)
        transitions = select(transitions_of(read_range(reader, key, start), program), program)
        earlier = earlier_transitions(reader, key, position, {t.process for t in transitions}, program)
    return transitions, start_epoch, until, earlier


def earlier_transitions(
    reader: redis.Redis, key: str, position: str, processes: Iterable[str], program: Optional[str]
) -> Dict[str, Transition]:
    """Per process of *processes*, its last transition in the history *key* up to
    *position* (a window's start): what says the state it was in then (the *earlier* of
    :func:`~raptor.consumer.history.analyze`). Read in slices going back until each has
    one, or the history's start, or EARLIER_LIMIT entries (a slice that would pass it is
    left unread: what it holds stays unknown, never replaced by something older);
    *reader* is the window's."""
    wanted = set(processes)
    found: Dict[str, Transition] = {}
    first: List[Any] = list(reader.xrange(key, "-", position, count=1) or []) if wanted else []
    if not first:
        return found
    first_ms = parse_id(_text(first[0][0]))[0]
    high, span, budget = position, EARLIER_FIRST_S, EARLIER_LIMIT
    while True:
        low_ms = parse_id(high.lstrip("("))[0] - int(span * 1000)
        low = f"{low_ms}-0" if low_ms > first_ms else "-"
        entries = []
        for entry in read_range(reader, key, low, end=high):
            entries.append(entry)
            if len(entries) > budget:
                return found
        for transition in reversed(transitions_of(entries, program)):
            if transition.process in wanted:
                found.setdefault(transition.process, transition)
        budget -= len(entries)
        if len(found) == len(wanted) or low == "-":
            return found
        high, span = "(" + low, span * EARLIER_GROWTH


def _text(entry_id: Any) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def cmd_history(args: argparse.Namespace, ctx: Context) -> int:
    host = args.host
    found = history_report(ctx.client, host, args.program, args.since)
    if found is None:
        what = "no history, snapshot or meta record of it in this Redis"
        ctx.err.write(printable(f"raptor history: unknown host {host}: {what}") + "\n")
        return EXIT_UNKNOWN_HOST
    transitions, since, until, earlier = found
    if args.json:
        document = report(host, args.program, transitions, since, until, earlier=earlier)
        ctx.out.write(json_text(document, indent=2) + "\n")
        return EXIT_OK
    if not transitions:
        what = f"{host} {args.program}" if args.program else host
        ctx.out.write(printable(f"{what}: no transitions from {_when(since)} to {_when(until)} UTC") + "\n")
        return EXIT_OK
    print_history(host, args.program, transitions, since=since, until=until, earlier=earlier, out=ctx.out)
    return EXIT_OK


def cmd_watch(args: argparse.Namespace, ctx: Context) -> int:
    try:
        from .watch import watch  # noqa: PLC0415 (rich is an optional extra)
    except ImportError:
        ctx.err.write("raptor watch needs rich: pip install 'raptor[cli]'\n")
        return EXIT_ERROR
    return watch(Follower(ctx.client), args.host, args.app, stop=ctx.stop, out=ctx.out)


def cmd_web(args: argparse.Namespace, ctx: Context) -> int:
    from ..web.server import serve  # noqa: PLC0415 (its dependencies are the web extra)

    return serve(args, ctx.client, args.redis_url or "", ctx.err)


def cmd_alert(args: argparse.Namespace, ctx: Context) -> int:
    from ..alert.command import serve  # noqa: PLC0415 (its dependencies are the alert extra)

    return serve(args, ctx.client, args.redis_url or "", ctx.err, ctx.stop)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="default: $REDIS_URL")
    # The consumers read the history stream now; --channel is accepted, and ignored, so
    # that scripts written for the pub/sub era still run.
    common.add_argument("--channel", help=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(prog="raptor", description="The fleet's Supervisor processes, read from Redis.")
    parser.add_argument("--version", action="version", version=f"raptor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", parents=[common], help="one row per host; exit 1 if duplicates")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--host", help="only hosts matching this glob (and list their procs)")
    status.add_argument("--app", help="only procs of this app_name (and list them)")
    status.set_defaults(func=cmd_status)
    watch = commands.add_parser("watch", parents=[common], help="live full-screen view of the fleet")
    watch.add_argument("--host", help="only hosts matching this glob")
    watch.add_argument("--app", help="only procs of this app_name")
    watch.set_defaults(func=cmd_watch)
    tail = commands.add_parser("tail", parents=[common], help="print transitions as they happen (JSON lines)")
    tail.add_argument(
        "--since",
        type=since_argument,
        metavar="WHEN",
        help="first print the history from WHEN: 30s, 10m, 2h, 1d ago, or an entry id (default: live only)",
    )
    tail.add_argument("--event", help="only events matching this glob, e.g. 'PROCESS_STATE_*'")
    tail.add_argument("--host", help="only hosts matching this glob")
    tail.add_argument("--count", type=int, metavar="N", help="stop after printing N messages (default: never)")
    tail.add_argument(
        "--format", choices=("json", "line"), default="json", help="json: the messages (default); line: for people"
    )
    tail.set_defaults(func=cmd_tail)
    history = commands.add_parser("history", parents=[common], help="one host's transitions, restarts and crashes")
    history.add_argument("host", metavar="HOST")
    history.add_argument("program", metavar="PROGRAM", nargs="?", help="only this process (group:name or name)")
    history.add_argument(
        "--since",
        type=since_argument,
        default=("duration", 86400.0),
        metavar="WHEN",
        help="the window's start: 30s, 10m, 2h, 1d ago (default: 24h), or an entry id",
    )
    history.add_argument("--json", action="store_true", help="one JSON document: transitions and processes")
    history.set_defaults(func=cmd_history)
    web = commands.add_parser("web", parents=[common], help="the live fleet dashboard, in a browser")
    from ..web.server import add_arguments  # noqa: PLC0415

    add_arguments(web)
    web.set_defaults(func=cmd_web)
    alert = commands.add_parser("alert", parents=[common], help="the fleet's alerter: rules, notifications")
    from ..alert.command import add_arguments as alert_arguments  # noqa: PLC0415

    alert_arguments(alert)
    alert.set_defaults(func=cmd_alert)
    return parser


def main(  # noqa: PLR0911 (each way out says its own line)
    argv: Optional[Sequence[str]] = None,
    out: Optional[TextIO] = None,
    err: Optional[TextIO] = None,
    stop: Optional[threading.Event] = None,
) -> int:
    """Run one command; *out* and *err* default to sys.stdout and sys.stderr, and
    setting *stop* ends ``tail`` and ``watch`` (for callers that run them in a thread)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    args = build_parser().parse_args(argv)
    if args.command == "alert" and args.check:  # a file's check needs no Redis
        from ..alert.command import check  # noqa: PLC0415 (its dependencies are the alert extra)

        return check(args, out, err)
    try:
        url = validate_redis_url(args.redis_url or "", "--redis-url/REDIS_URL")
    except ConfigError as exc:
        err.write(f"raptor: {exc}\n")
        return EXIT_ERROR
    ctx = Context(make_client(url), out, err, stop)
    try:
        code: int = args.func(args, ctx)
    except redis.exceptions.AuthenticationError as exc:  # a ConnectionError: test it first
        err.write(f"raptor: Redis at {redact_url(url)} refused the credentials: {exc}\n")
        return EXIT_ERROR
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        err.write(f"raptor: cannot reach Redis at {redact_url(url)}: {exc}\n")
        return EXIT_ERROR
    except redis.exceptions.ResponseError as exc:  # e.g. NOPERM: an ACL without the command
        err.write(f"raptor: Redis at {redact_url(url)} refused a command: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        ctx.client.close()
    return code


def entry_point() -> None:
    sys.exit(main())
