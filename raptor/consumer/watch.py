"""``raptor watch``: the live fleet view (needs the ``cli`` extra: rich).

It follows the history stream (:class:`~raptor.consumer.follow.Follower`): after Redis
went away it resumes where it was. Every string from Redis is drawn as plain text
(never console markup), its control characters escaped."""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any, Dict, Mapping, Optional, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .fleet import Fleet, describe_duplicate, state_order
from .follow import Follower
from .text import printable

HIGHLIGHT_FOR = 3.0  # seconds a changed row stays highlighted
STATE_STYLES = {
    "RUNNING": "green",
    "STARTING": "yellow",
    "STOPPING": "yellow",
    "BACKOFF": "bold red",
    "FATAL": "bold white on red",
    "EXITED": "red",
    "STOPPED": "dim",
    "UNKNOWN": "magenta",
}


def _start_epoch(proc: Mapping[str, Any]) -> Optional[float]:
    if proc.get("start"):
        return float(proc["start"])
    start_time = proc.get("start_time")
    if isinstance(start_time, str):
        try:
            return datetime.datetime.fromisoformat(start_time).timestamp()
        except ValueError:
            return None
    return None


def describe_live(proc: Mapping[str, Any], now: float) -> str:
    """The description, with a RUNNING process' uptime counted up to *now*."""
    start = _start_epoch(proc)
    if proc.get("statename") == "RUNNING" and start:
        uptime = datetime.timedelta(seconds=int(max(0.0, now - start)))
        return f"pid {proc.get('pid')}, uptime {uptime}"
    return str(proc.get("description", ""))


def render(
    fleet: Fleet,
    changed: Dict[str, float],
    *,
    host_glob: Optional[str],
    app: Optional[str],
    now: float,
    status: str,
) -> Group:
    hosts = fleet.select(host_glob, app)
    total = sum(len(h.procs) for h in hosts)
    counts: Dict[str, int] = {}
    for host in hosts:
        for state, count in host.counts().items():
            counts[state] = counts.get(state, 0) + count
    summary = Text(f"raptor watch — {len(hosts)} host{'' if len(hosts) == 1 else 's'}, {total} processes  ")
    for state in sorted(counts, key=state_order):
        summary.append(printable(f"{state} {counts[state]}  "), style=STATE_STYLES.get(state, ""))
    summary.append(printable(f"  [{status}]"), style="dim" if status == "live" else "bold red")
    lines: list[Any] = [summary]
    for duplicate in fleet.find_duplicates():
        lines.append(Text(printable(describe_duplicate(duplicate)), style="bold red"))
    stale = [h.name for h in hosts if h.stale(now)]
    if stale:
        lines.append(Text(printable(f"stale (no refresh for 2 ticks): {', '.join(stale)}"), style="yellow"))
    table = Table(expand=True, show_edge=False, pad_edge=False)
    for column in ("host", "process", "state", "pid", "description"):
        table.add_column(column, no_wrap=column != "description")
    for host in hosts:
        for name in sorted(host.procs):
            proc = host.procs[name]
            state = str(proc.get("statename"))
            row_style = "reverse" if now - changed.get(f"{host.name}-{name}", 0.0) < HIGHLIGHT_FOR else ""
            # Text, not str: a str cell is read as console markup, and names are anyone's
            table.add_row(
                Text(printable(host.name)),
                Text(printable(name)),
                Text(printable(state), style=STATE_STYLES.get(state, "")),
                Text(printable(proc.get("pid") or "-")),
                Text(printable(describe_live(proc, now))),
                style=row_style,
            )
    lines.append(table)
    return Group(*lines)


def watch(
    follower: Follower,
    host_glob: Optional[str],
    app: Optional[str],
    stop: Optional[threading.Event] = None,
    out: Optional[TextIO] = None,
) -> int:
    """Draw the fleet until interrupted or *stop* is set; on *out* (default: stdout)."""
    console = Console(file=out)
    changed: Dict[str, float] = {}
    last_draw = 0.0

    def status() -> str:
        return "live" if follower.connected else f"Redis unreachable, retrying ({follower.last_error})"

    with Live(console=console, screen=console.is_terminal, auto_refresh=False) as live:

        def draw(force: bool = False) -> None:
            nonlocal last_draw
            now = time.time()
            if force or now - last_draw >= 0.2:
                live.update(
                    render(follower.fleet, changed, host_glob=host_glob, app=app, now=now, status=status()),
                    refresh=True,
                )
                last_draw = now

        def on_change(message: Dict[str, Any]) -> None:
            changed[f"{message.get('host')}-{message.get('name')}"] = time.time()
            draw()

        follower.run(
            on_change=on_change,
            on_idle=lambda: draw(force=True),
            on_state=lambda connected: draw(force=True),
            stop=stop,
        )
    return 0
