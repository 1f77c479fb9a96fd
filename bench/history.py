"""The history's figures: Redis memory per million entries, a history query over a
1,000,000-entry history, and one consumer catching up after a disconnect.

    .venv/bin/python -m bench.history [--hosts 200] [--per-host 5000] [--out bench/results]

Everything real, on loopback: a redis-server of its own, filled as the listeners fill
it (each entry XADDed to ``proc_history`` and to its host's ``host_history:<host>``,
trimmed as the defaults trim, entries made by :mod:`raptor.messages` from
realistic messages: Velociraptor names, restarts and crashes); the query is
``raptor history``'s own code, the catch-up ``raptor tail``'s and ``raptor watch``'s
stream reader. Writes ``history.json``, ``history.md`` and ``history.png`` to --out.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import redis

from bench.environment import machine
from harness import RedisServer, velociraptor_names, wait_for
from raptor import keys
from raptor.consumer import cli
from raptor.consumer.fleet import Fleet
from raptor.consumer.follow import Follower
from raptor.consumer.stream import EntryDecoder, StreamReader
from raptor.messages import history_entry, state_message
from raptor.publisher.process_table import blank_info

RESTART = [("STOPPING", "RUNNING"), ("STOPPED", "STOPPING"), ("STARTING", "STOPPED"), ("RUNNING", "STARTING")]
CRASH = [("EXITED", "RUNNING"), ("STARTING", "EXITED"), ("RUNNING", "STARTING")]
TARGETS = {
    "query_p99_ms": ("history query, one process, 1,000,000-entry history: p99 (ms)", "<= 50"),
    "catch_up_entries_per_s": ("one consumer catching up after a disconnect: the fleet view (entries/s)", ">= 100000"),
    "read_entries_per_s": ("one consumer reading the history, every entry made a message (entries/s)", ">= 100000"),
}


def fill(client: Any, hosts: int, per_host: int, programs: int, started: float) -> Dict[str, Any]:
    """*per_host* transitions on each of *hosts* hosts, as their listeners write them;
    returns the process names of each host."""
    names = velociraptor_names(programs)
    pipe = client.pipeline(transaction=False)
    seq = {host: 0 for host in range(hosts)}
    written = 0
    for step in range(per_host):
        for host in range(hosts):
            hostname = f"web{host:04d}.example.com"
            name = names[(step // 4) % programs]
            cycle = CRASH if (step // 4) % 7 == 3 else RESTART
            to_state, from_state = cycle[step % len(cycle)]
            seq[host] += 1
            info = blank_info(name, name)
            now = int(started + step)
            info.update(
                statename=to_state,
                state={"RUNNING": 20, "STARTING": 10, "STOPPING": 40, "STOPPED": 0, "EXITED": 100}[to_state],
                pid=10_000 + step if to_state in ("RUNNING", "STOPPING") else 0,
                now=now,
                start=now - 1,
                description=f"pid {10_000 + step}, uptime 0:00:01" if to_state == "RUNNING" else "",
            )
            message = state_message(
                hostname,
                info,
                event=f"PROCESS_STATE_{to_state}",
                from_state=from_state,
                seq=seq[host],
                run_id=f"{host:012x}",
            )
            entry = history_entry(message, False if to_state == "EXITED" else None)
            pipe.xadd(keys.FLEET_HISTORY, entry, maxlen=keys.DEFAULT_FLEET_HISTORY_MAXLEN, approximate=True)
            pipe.xadd(keys.history_key(hostname), entry, maxlen=keys.DEFAULT_HISTORY_MAXLEN, approximate=True)
            written += 1
            if written % 1000 == 0:
                pipe.execute()
    pipe.execute()
    used = names[: min(programs, (per_host + 3) // 4)]
    return {"names": used, "hosts": [f"web{host:04d}.example.com" for host in range(hosts)], "entries": written}


def memory(client: Any, hosts: List[str], entries: int) -> Dict[str, Any]:
    """Redis' own count of the streams' bytes (MEMORY USAGE, every node sampled)."""
    fleet = int(client.memory_usage(keys.FLEET_HISTORY, samples=0))
    per_host = sum(int(client.memory_usage(keys.history_key(host), samples=0)) for host in hosts)
    fleet_len = int(client.xlen(keys.FLEET_HISTORY))
    host_len = sum(int(client.xlen(keys.history_key(host))) for host in hosts)
    return {
        "fleet_stream_entries": fleet_len,
        "host_stream_entries": host_len,
        "fleet_stream_mb_per_million": round(fleet / fleet_len * 1e6 / 2**20, 1),
        "host_streams_mb_per_million": round(per_host / host_len * 1e6 / 2**20, 1),
        "both_mb_per_million_transitions": round((fleet + per_host) / entries * 1e6 / 2**20, 1),
        "used_memory_mb": round(int(client.info("memory")["used_memory"]) / 2**20, 1),
    }


def timed(run: Callable[..., None], on_each: str, hook: Callable[..., None], done: threading.Event, what: str) -> float:
    """Seconds *run* (a consumer loop, in a thread, its *on_each* hook *hook*) takes until *done*."""
    started = time.perf_counter()
    thread = threading.Thread(target=run, kwargs={on_each: hook, "should_stop": done.is_set, "poll": 0.05}, daemon=True)
    thread.start()
    if not done.wait(600):
        raise SystemExit(f"{what} not done in 600 s")
    elapsed = time.perf_counter() - started
    thread.join(10)
    return elapsed


def catch_up(follower: Follower, total: int) -> Dict[str, Any]:
    """The follower, away while *total* entries were added, resumes: entries/s until it has them all."""
    done = threading.Event()
    before = follower.messages

    def on_change(message: Dict[str, Any]) -> None:
        if follower.messages - before >= total:
            done.set()

    elapsed = timed(follower.run, "on_change", on_change, done, f"the follower's catch-up of {total} entries")
    return {
        "catch_up_entries": total,
        "catch_up_s": round(elapsed, 2),
        "catch_up_entries_per_s": round(total / elapsed),
        "catch_up_gaps": follower.gaps,
    }


def read_all(port: int, total: int) -> Dict[str, Any]:
    """One StreamReader (``raptor tail``'s loop, every entry made a message) reading the
    whole fleet stream from its start: entries/s."""
    count = 0
    done = threading.Event()

    def on_message(message: Dict[str, Any], entry_id: str) -> None:
        nonlocal count
        count += 1
        if count >= total:
            done.set()

    reader = StreamReader(redis.Redis(host="127.0.0.1", port=port), start="0-0")
    elapsed = timed(reader.run, "on_message", on_message, done, f"the reader's read of {total} entries")
    return {"read_entries_per_s": round(total / elapsed)}


def queries(url: str, hosts: List[str], names: List[str], count: int) -> Dict[str, Any]:
    """``raptor history HOST PROGRAM --json`` (its own code, in-process), *count* times."""
    timings = []
    rng = random.Random(13)  # noqa: S311 (a reproducible choice of queries, no secret)
    for _ in range(count):
        host, name = rng.choice(hosts), rng.choice(names)
        out, err = io.StringIO(), io.StringIO()
        started = time.perf_counter()
        code = cli.main(["history", host, name, "--json", "--redis-url", url], out=out, err=err)
        timings.append((time.perf_counter() - started) * 1000)
        if code != 0 or not json.loads(out.getvalue())["transitions"]:
            raise SystemExit(f"raptor history {host} {name} answered {code}: {err.getvalue()}")
    timings.sort()
    return {
        "query_count": count,
        "query_p50_ms": round(statistics.median(timings), 1),
        "query_p99_ms": round(timings[int(0.99 * (count - 1))], 1),
        "query_max_ms": round(timings[-1], 1),
        "query_series_ms": [round(t, 2) for t in timings],
    }


def write_report(results: Dict[str, Any], out: Path) -> None:
    figures = results["figures"]
    lines = [
        "# History benchmark",
        "",
        f"`{results['command']}` on {results['machine']['cpus']} CPUs ({results['machine']['cpu']}), "
        f"{results['machine']['redis']}, {results['date']}.",
        "",
        f"{figures['entries']:,} transitions of {figures['hosts']} hosts x {figures['programs']} programs "
        f"({figures['per_host']:,} per host), each XADDed to `proc_history` and to its `host_history:<host>` "
        "with the default retention, as the listener writes them.",
        "",
        "| figure | value | target |",
        "| --- | --- | --- |",
        f"| Redis memory, fleet stream (MB per million entries) | {figures['fleet_stream_mb_per_million']} | - |",
        f"| Redis memory, host streams (MB per million entries) | {figures['host_streams_mb_per_million']} | - |",
        f"| Redis memory, both, per million transitions published (MB) | "
        f"{figures['both_mb_per_million_transitions']} | - |",
    ]
    for key, (label, target) in TARGETS.items():
        lines.append(f"| {label} | {figures[key]:,} | {target} |")
    lines += [
        f"| history query p50 / max (ms) | {figures['query_p50_ms']} / {figures['query_max_ms']} | |",
        "",
        "How to read it: the memory is Redis' own `MEMORY USAGE` of the streams divided by their entries; "
        "a transition costs one entry in each stream. The query is `raptor history HOST PROGRAM --json` "
        f"({figures['query_count']} random host/program pairs, in-process: reading the host's stream, the "
        "analysis, the JSON): it reads one host's stream, so its time grows with that host's entries "
        f"({figures['per_host']:,} here, the default `RAPTOR_HISTORY_MAXLEN` 5,000), not with the fleet's. "
        "The catch-up is `raptor watch`'s Follower, stopped while the whole history was written, then "
        "resumed: every entry read and its seq judged, and of each process the last state of each "
        "1,000-entry batch decoded and applied to the fleet view (hiredis installed, as the `cli` extra "
        "installs it); the written history repeats each process 4 times in a row per host (a restart), as "
        "a fleet's does, so about a third of the entries are decoded. "
        "The reader is `raptor tail`'s loop alone (StreamReader from the stream's start, "
        "each entry made a message, nothing applied).",
        "",
        "![history](history.png)",
        "",
    ]
    (out / "history.md").write_text("\n".join(lines), encoding="utf-8")

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 4.2))
    bars = {
        "fleet stream": figures["fleet_stream_mb_per_million"],
        "host streams": figures["host_streams_mb_per_million"],
        "both, per transition": figures["both_mb_per_million_transitions"],
    }
    left.bar(list(bars), list(bars.values()), color=["tab:blue", "tab:green", "tab:gray"])
    left.set_ylabel("MB per million entries")
    left.set_title("Redis memory")
    middle.plot(range(1, len(figures["query_series_ms"]) + 1), figures["query_series_ms"], color="tab:blue")
    middle.axhline(50, color="tab:red", linestyle="--", label="target 50 ms")
    middle.set_xlabel("queries, sorted")
    middle.set_ylabel("ms")
    middle.set_title(f"raptor history HOST PROGRAM over {figures['entries']:,} entries")
    middle.legend()
    right.bar(
        ["fleet view (Follower)", "reader (tail)"],
        [figures["catch_up_entries_per_s"], figures["read_entries_per_s"]],
        color=["tab:green", "tab:blue"],
    )
    right.axhline(100_000, color="tab:red", linestyle="--", label="target 100,000/s")
    right.set_ylabel("entries/s")
    right.set_title("one consumer resuming")
    right.legend()
    fig.tight_layout()
    fig.savefig(out / "history.png", dpi=110)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--per-host", type=int, default=5000)
    parser.add_argument("--programs", type=int, default=200)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir, RedisServer(Path(workdir) / "redis") as server:
        client = server.client()
        follower = Follower(redis.Redis(host="127.0.0.1", port=server.port))
        stop = threading.Event()
        thread = threading.Thread(target=follower.run, kwargs={"stop": stop, "poll": 0.05}, daemon=True)
        thread.start()
        wait_for(lambda: follower.connected, 10, "the follower to connect")
        stop.set()  # away from here: the history is written meanwhile
        thread.join(10)
        started = time.monotonic()
        filled = fill(client, args.hosts, args.per_host, args.programs, time.time() - args.per_host)
        print(f"filled {filled['entries']:,} entries in {time.monotonic() - started:.0f} s", flush=True)
        figures: Dict[str, Any] = {
            "hosts": args.hosts,
            "programs": args.programs,
            "per_host": args.per_host,
            "entries": filled["entries"],
        }
        figures.update(memory(client, filled["hosts"], filled["entries"]))
        figures.update(catch_up(follower, filled["entries"]))
        figures.update(read_all(server.port, filled["entries"]))
        # The follower's fleet and decoder cache (40,000 processes) are not the query's: a
        # `raptor history` runs in a process of its own, without them for the collector to walk.
        follower.fleet = Fleet()
        follower.reader.decode = EntryDecoder()
        gc.collect()
        figures.update(queries(server.url, filled["hosts"], filled["names"], args.queries))
    results = {
        "command": " ".join(["python -m bench.history", *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": machine(),
        "figures": figures,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "history.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_report(results, args.out)
    print(json.dumps({k: v for k, v in figures.items() if not k.endswith("series_ms")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
