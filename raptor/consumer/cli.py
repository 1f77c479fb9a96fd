"""``raptor``: the fleet as the publishers put it in Redis.

raptor status [--json] [--host GLOB] [--app NAME]   one row per host; exit 1 on duplicates
raptor watch  [--host GLOB] [--app NAME]            live full-screen view
raptor tail   [--event NAME] [--host GLOB]          raw messages as JSON lines
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

import redis

from .. import __version__
from ..config import ConfigError, redact_url, validate_redis_url
from ..keys import DEFAULT_CHANNEL
from .fleet import SAME_SUPERVISORD, Duplicate, Fleet, Host, state_order
from .follow import Follower, make_client, next_message, parse_message

EXIT_OK, EXIT_DUPLICATES, EXIT_ERROR = 0, 1, 2


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


def describe_duplicate(duplicate: Duplicate) -> str:
    a, b = duplicate.a, duplicate.b
    if duplicate.basis == SAME_SUPERVISORD:
        return (f"DUPLICATE: {a} and {b} are one supervisord publishing under two names "
                f"(same supervisord_id {duplicate.detail})")  # fmt: skip
    return (f"DUPLICATE: {a} and {b} report the same processes with the same pids ({duplicate.detail}): "
            "one supervisord publishing under two names, guessed because one of them publishes no "
            "supervisord_id (an older listener)")  # fmt: skip


def cmd_status(args: argparse.Namespace, client: redis.Redis, out: TextIO) -> int:
    fleet = Fleet()
    fleet.load(client)
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


def missed_before(message: Dict[str, Any], last_seen: Dict[str, Tuple[str, int]]) -> int:
    """How many messages of this host's listener run never arrived before this one.

    Pub/sub loses messages across a reconnect; `seq` (contiguous per run) shows it.
    Unknown (0) for a host's first message or a new run."""
    host, run_id, seq = message.get("host"), message.get("run_id"), message.get("seq")
    if not isinstance(host, str) or not isinstance(run_id, str) or not isinstance(seq, int):
        return 0
    previous = last_seen.get(host)
    if previous is not None and previous[0] == run_id and seq <= previous[1]:
        return 0  # a re-sent batch (delivery is at least once)
    last_seen[host] = (run_id, seq)
    if previous is None or previous[0] != run_id:
        return 0
    return seq - previous[1] - 1


def cmd_tail(args: argparse.Namespace, client: redis.Redis, out: TextIO) -> int:
    printed = 0
    last_seen: Dict[str, Tuple[str, int]] = {}
    while args.count is None or printed < args.count:
        pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(args.channel)
            while args.count is None or printed < args.count:
                raw = next_message(pubsub, 1.0)
                if raw is None:
                    continue
                data = raw["data"]
                text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
                message = parse_message(text)
                if message is None:
                    continue
                missed = missed_before(message, last_seen)
                if missed:
                    sys.stderr.write(
                        f"raptor tail: {missed} messages from {message['host']} missed before seq {message['seq']}\n"
                    )
                if args.event and not fnmatch.fnmatchcase(str(message.get("event", "")), args.event):
                    continue
                if args.host and not fnmatch.fnmatchcase(str(message.get("host", "")), args.host):
                    continue
                out.write((format_line(message) if args.format == "line" else text) + "\n")
                out.flush()
                printed += 1
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            sys.stderr.write("raptor tail: Redis unreachable, reconnecting\n")
            time.sleep(1.0)
        finally:
            pubsub.close()
    return EXIT_OK


def cmd_watch(args: argparse.Namespace, client: redis.Redis, out: TextIO) -> int:
    try:
        from .watch import watch  # noqa: PLC0415 (rich is an optional extra)
    except ImportError:
        sys.stderr.write("raptor watch needs rich: pip install 'raptor[cli]'\n")
        return EXIT_ERROR
    return watch(Follower(client, args.channel), args.host, args.app)


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
    tail.add_argument("--count", type=int, help="stop after this many messages")
    tail.add_argument(
        "--format", choices=("json", "line"), default="json", help="json: as published (default); line: for people"
    )
    tail.set_defaults(func=cmd_tail)
    return parser


def main(argv: Optional[Sequence[str]] = None, out: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    try:
        url = validate_redis_url(args.redis_url or "", "--redis-url/REDIS_URL")
    except ConfigError as exc:
        sys.stderr.write(f"raptor: {exc}\n")
        return EXIT_ERROR
    client = make_client(url)
    try:
        code: int = args.func(args, client, out)
    except redis.exceptions.AuthenticationError as exc:  # a ConnectionError: test it first
        sys.stderr.write(f"raptor: Redis at {redact_url(url)} refused the credentials: {exc}\n")
        return EXIT_ERROR
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        sys.stderr.write(f"raptor: cannot reach Redis at {redact_url(url)}: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK
    return code


def entry_point() -> None:
    sys.exit(main())
