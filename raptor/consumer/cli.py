"""``raptor``: the fleet as the publishers put it in Redis.

raptor status [--json] [--host GLOB] [--app NAME]   one row per host; exit 1 on duplicates
raptor watch  [--host GLOB] [--app NAME]            live full-screen view
raptor tail   [--event GLOB] [--host GLOB] [--count N] [--format json|line]
                                                    messages as they are published

Exit codes: 0 ok, 1 duplicate hosts (status), 2 bad configuration or Redis unreachable
(one line on stderr). ``raptor tail`` runs until interrupted, or until it has printed
``--count`` messages; it says on stderr how many messages of a listener run it missed
(pub/sub loses what is published while a subscriber reconnects) and when Redis goes
away and comes back. ``watch`` and ``tail`` reconnect on their own, with backoff.

:func:`main` takes its streams and, for callers that run it in a thread, a ``stop``
event that ends ``tail`` and ``watch`` cleanly.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, TextIO

import redis

from .. import __version__
from ..config import ConfigError, redact_url, validate_redis_url
from ..keys import DEFAULT_CHANNEL
from .fleet import Duplicate, Fleet, Host, describe_duplicate, state_order
from .follow import Follower, Subscriber, make_client
from .seq import Seen, SeqTracker

EXIT_OK, EXIT_DUPLICATES, EXIT_ERROR = 0, 1, 2


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
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n")


def print_status(hosts: List[Host], duplicates: List[Duplicate], detail: bool, out: TextIO, now: float) -> None:
    if not hosts:
        out.write("no hosts publish to this Redis (no host_procs:* keys)\n")
    else:
        states = sorted({s for h in hosts for s in h.counts()}, key=state_order)
        rows = [["HOST", "PROCS", *states, "REFRESHED", "STATUS"]]
        for host in hosts:
            counts = host.counts()
            status = "STALE" if host.stale(now) else "ok"
            rows.append(
                [host.name, str(len(host.procs)), *(str(counts.get(s, 0)) for s in states), _age(host.age(now)), status]
            )
        _table(rows, out)
        if detail:
            out.write("\n")
            rows = [["HOST", "PROCESS", "STATE", "PID", "DESCRIPTION"]]
            for host in hosts:
                for name in sorted(host.procs):
                    proc = host.procs[name]
                    pid = str(proc.get("pid") or "-")
                    rows.append([host.name, name, str(proc.get("statename")), pid, str(proc.get("description", ""))])
            _table(rows, out)
    for duplicate in duplicates:
        out.write(describe_duplicate(duplicate) + "\n")


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    out = ctx.out
    fleet = Fleet()
    fleet.load(ctx.client)
    hosts = fleet.select(args.host, args.app)
    duplicates = fleet.find_duplicates()
    now = time.time()
    if args.json:
        json.dump(Fleet.as_json(hosts, duplicates, now), out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        print_status(hosts, duplicates, detail=bool(args.host or args.app), out=out, now=now)
    return EXIT_DUPLICATES if duplicates else EXIT_OK


def format_line(message: Dict[str, Any]) -> str:
    """One human-readable line: time, host, process, transition, pid."""
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
    return f"{when}  {message.get('host')}  {message.get('name')}  {change}{resync}"


def cmd_tail(args: argparse.Namespace, ctx: Context) -> int:
    printed = 0
    runs: Dict[str, SeqTracker] = defaultdict(SeqTracker)  # per host: which messages arrived
    subscriber = Subscriber(ctx.client, args.channel)
    went_down = False

    def on_message(message: Dict[str, Any], text: str) -> None:
        nonlocal printed
        host = message.get("host")
        if isinstance(host, str):
            verdict = runs[host].observe(message.get("run_id"), message.get("seq"))
            if verdict.seen is Seen.GAP:
                ctx.err.write(
                    f"raptor tail: {verdict.missed} messages from {host} missed before seq {message['seq']}\n"
                )
                ctx.err.flush()
        if args.event and not fnmatch.fnmatchcase(str(message.get("event", "")), args.event):
            return
        if args.host and not fnmatch.fnmatchcase(str(host or ""), args.host):
            return
        ctx.out.write((format_line(message) if args.format == "line" else text) + "\n")
        ctx.out.flush()
        printed += 1

    def on_state(connected: bool) -> None:
        nonlocal went_down
        if not connected:
            ctx.err.write(f"raptor tail: Redis unreachable ({subscriber.last_error}), reconnecting\n")
            went_down = True
        elif went_down:
            ctx.err.write("raptor tail: reconnected to Redis\n")
        ctx.err.flush()

    subscriber.run(
        on_message,
        on_state=on_state,
        should_stop=lambda: args.count is not None and printed >= args.count,
        stop=ctx.stop,
    )
    return EXIT_OK


def cmd_watch(args: argparse.Namespace, ctx: Context) -> int:
    try:
        from .watch import watch  # noqa: PLC0415 (rich is an optional extra)
    except ImportError:
        ctx.err.write("raptor watch needs rich: pip install 'raptor[cli]'\n")
        return EXIT_ERROR
    return watch(Follower(ctx.client, args.channel), args.host, args.app, stop=ctx.stop, out=ctx.out)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="default: $REDIS_URL")
    common.add_argument("--channel", default=os.environ.get("RAPTOR_CHANNEL") or DEFAULT_CHANNEL)
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
    tail = commands.add_parser("tail", parents=[common], help="print messages as JSON lines")
    tail.add_argument("--event", help="only events matching this glob, e.g. 'PROCESS_STATE_*'")
    tail.add_argument("--host", help="only hosts matching this glob")
    tail.add_argument("--count", type=int, metavar="N", help="stop after printing N messages (default: never)")
    tail.add_argument(
        "--format", choices=("json", "line"), default="json", help="json: as published (default); line: for people"
    )
    tail.set_defaults(func=cmd_tail)
    return parser


def main(
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
