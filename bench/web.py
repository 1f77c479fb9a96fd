"""raptor web's figures: first render of a 1,000-host fleet, event-to-screen latency under a
sustained stream of transitions, and the server's cost with 100 pages connected.

    .venv/bin/python -m bench.web [--hosts 1000] [--programs 50] [--rate 2000] [--seconds 30]
                                  [--followers 100] [--out bench/results]

Everything real, on loopback: a redis-server of its own holding *hosts* snapshots of
*programs* processes each (as listeners write them: ``host_procs:``, ``host_meta:``), the
``raptor web`` server process, and Debian's Chromium driven by Playwright.

1. **First render**: a new page, from ``goto`` until the fleet table is drawn
   (``body[data-ready='1']``): the page's load, ``/api/fleet`` (every snapshot read) and
   the first frame. Five times; the median and the worst.
2. **Event to screen**: a writer process appends transitions (``RUNNING``/``STARTING``
   flips, each host's seq counting on, as a listener's) at *rate* per second for
   *seconds*, with its host's snapshot and meta, a MULTI/EXEC every 20 ms as a listener
   writes a batch. The page records, for each entry, the time of the first frame drawn after it
   was applied, minus the entry id's time (Redis' clock at XADD; same machine). p50,
   p99, max over every entry.
3. **Server cost with followers**: the same stream with *followers* more pages
   connected to ``/api/events`` (plain HTTP clients in a process of their own, each
   counting the entries it gets, all of them checked), the server's RSS and CPU
   (``/proc``) over the window, and the browser's latency again.

Writes ``web.json``, ``web.md`` and ``web.png`` to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import redis

from bench.environment import machine
from harness import RedisServer, velociraptor_names, wait_for
from harness.web import WebServer
from raptor import keys
from raptor.messages import history_entry, state_message
from raptor.publisher.process_table import blank_info
from raptor.web.app import stream_position

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
TARGETS = {
    "first_render_median_s": ("first render of the fleet page (s, median of 5)", "<= 2"),
    "latency_p99_ms": ("event to screen at the sustained rate, p99 (ms)", "<= 1000"),
    "followers_latency_p99_ms": ("the same with the followers connected, p99 (ms)", "<= 1000"),
}


def host_name(index: int) -> str:
    return f"web{index:04d}.example.com"


def info_of(name: str, running: bool, pid: int, now: int) -> Dict[str, Any]:
    info: Dict[str, Any] = dict(blank_info(name, name))
    info.update(
        statename="RUNNING" if running else "STARTING",
        state=20 if running else 10,
        pid=pid if running else 0,
        now=now,
        start=now - 10,
        description=f"pid {pid}, uptime 0:00:10" if running else "",
    )
    return info


def fill(client: redis.Redis, hosts: int, programs: int) -> None:
    """Every host's snapshot and meta record, as its listener keeps them (seq 0 of run r<i>)."""
    names = velociraptor_names(programs)
    now = int(time.time())
    pipe = client.pipeline(transaction=False)
    for index in range(hosts):
        host = host_name(index)
        snapshot = {name: json.dumps(info_of(name, True, 1000 + n, now)) for n, name in enumerate(names)}
        pipe.hset(keys.snapshot_key(host), mapping=snapshot)
        meta = {
            keys.META_RUN_ID: f"r{index:011d}",
            keys.META_SEQ: 0,
            keys.META_REFRESHED: time.time(),
            keys.META_SUPERVISORD_ID: f"sup-{index}",
            keys.META_ACK_P99_MS: "0.25",
            keys.META_DISCARDED: 0,
            keys.META_COALESCED: 0,
        }
        pipe.hset(keys.meta_key(host), mapping=meta)
        if index % 50 == 49:
            pipe.execute()
    pipe.execute()


def write(port: int, hosts: int, programs: int, rate: int, seconds: float) -> None:
    """The writer process: *rate* x *seconds* transitions, paced at *rate* a second (all of
    them, however late a loaded machine makes it), spread over the fleet, each host's seq
    counting on from 0, each transition written with the host's snapshot field and meta
    seq (as the listener writes)."""
    client = redis.Redis(host="127.0.0.1", port=port)
    names = velociraptor_names(programs)
    seq = [0] * hosts
    running = {}
    tick = 0.02  # 50 batches a second
    per_batch = max(1, round(rate * tick))
    started = time.monotonic()
    count = 0
    total = int(rate * seconds)  # every one of them, even when the machine makes it late
    while count < total:
        # One MULTI/EXEC a batch (the listener makes one per batch of events too).
        pipe = client.pipeline(transaction=True)
        for _ in range(min(per_batch, total - count)):
            index = count % hosts
            name = names[(count // hosts) % programs]
            host = host_name(index)
            key = (index, name)
            now_running = not running.get(key, True)
            running[key] = now_running
            seq[index] += 1
            info = info_of(name, now_running, 5000 + count, int(time.time()))
            message = state_message(
                host,
                info,  # type: ignore[arg-type]
                event="PROCESS_STATE_" + info["statename"],
                from_state="STARTING" if now_running else "RUNNING",
                seq=seq[index],
                run_id=f"r{index:011d}",
            )
            entry = history_entry(message)
            pipe.xadd(keys.FLEET_HISTORY, entry, maxlen=keys.DEFAULT_FLEET_HISTORY_MAXLEN, approximate=True)
            pipe.xadd(keys.history_key(host), entry, maxlen=keys.DEFAULT_HISTORY_MAXLEN, approximate=True)
            pipe.hset(keys.snapshot_key(host), name, json.dumps(info))
            pipe.hset(keys.meta_key(host), keys.META_SEQ, seq[index])
            count += 1
        pipe.execute()
        behind = started + (count / rate) - time.monotonic()
        if behind > 0:
            time.sleep(behind)  # paced: the rate, not as fast as Redis takes it


def follow(port: int, count: int, seconds: float, after: str, results: Any) -> None:
    """The follower process: *count* plain event-stream clients from *after*, for *seconds*;
    puts (entries each got) on *results*."""

    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)  # a batch is one line
        writer.write(f"GET /api/events?after={after} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        await writer.drain()
        got = 0
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                try:
                    line = await asyncio.wait_for(reader.readline(), timeout=max(0.1, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                if line.startswith(b"data: ["):
                    got += line.count(b'"entry_id"')
        finally:
            writer.close()
        return got

    async def main() -> List[int]:
        return list(await asyncio.gather(*(one() for _ in range(count))))

    results.put(asyncio.run(main()))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks (100/s)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: List[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


def first_renders(browser: Any, url: str, times: int = 5) -> List[float]:
    found = []
    for _ in range(times):
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        started = time.monotonic()
        page.goto(url)
        page.wait_for_selector("body[data-ready='1'] #spacer .row", timeout=60_000)
        found.append(time.monotonic() - started)
        page.close()
    return found


def stream_latency(
    browser: Any, web: WebServer, port: int, args: argparse.Namespace, followers: int
) -> Tuple[Dict[str, Any], List[float]]:
    """Open the fleet page, write for --seconds (with *followers* other clients), and
    return the figures and the latencies the page measured."""
    page = browser.new_page(viewport={"width": 1500, "height": 900})
    errors: List[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(web.url)
    page.wait_for_selector("body[data-ready='1'] #spacer .row", timeout=60_000)
    start_entries = page.evaluate("() => window.raptorStats.entries")
    after = stream_position(redis.Redis(host="127.0.0.1", port=port))
    results: Any = multiprocessing.Queue()
    follower = None
    if followers:
        follower = multiprocessing.Process(target=follow, args=(web.port, followers, args.seconds + 8, after, results))
        follower.start()
        time.sleep(2)  # let them connect before the stream starts
    assert web.process is not None
    pid = web.process.pid
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    rss: List[float] = []
    writer = multiprocessing.Process(target=write, args=(port, args.hosts, args.programs, args.rate, args.seconds))
    writer.start()
    while writer.is_alive():
        rss.append(rss_mb(pid))
        writer.join(1.0)
    # What the writer really wrote after the page's start (not what it was asked to).
    written = len(redis.Redis(host="127.0.0.1", port=port).xrange(keys.FLEET_HISTORY, "(" + after, "+"))
    assert written == int(args.rate * args.seconds), f"the writer wrote {written} entries"
    try:
        wait_for(
            lambda: page.evaluate("() => window.raptorStats.entries") - start_entries >= written,
            30,
            "the page to have every entry",
        )
    except AssertionError as exc:
        seen = page.evaluate("() => window.raptorStats")
        raise AssertionError(
            f"{exc}; the page got {seen['entries'] - start_entries} of {written} entries, last {seen['lastEntry']};"
            f" reloads {seen['reloads']}, resets {seen['resets']}, disconnects {seen['disconnects']};"
            f" script errors {errors[:3]}; server log: {web.log_text()[-1500:]}"
        ) from None
    cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before) * 100
    latencies = page.evaluate("() => window.raptorStats.latencies")[-written:]
    stats = page.evaluate("() => window.raptorStats")
    figures: Dict[str, Any] = {
        "entries_written": written,
        "entries_on_page": stats["entries"] - start_entries,
        "page_reloads": stats["reloads"],
        "page_resets": stats["resets"],
        "page_disconnects": stats["disconnects"],
        "page_script_errors": len(errors),
        "latency_p50_ms": round(percentile(latencies, 0.5), 1),
        "latency_p99_ms": round(percentile(latencies, 0.99), 1),
        "latency_max_ms": round(max(latencies), 1),
        "server_cpu_percent": round(cpu, 1),
        "server_rss_mb_max": round(max(rss), 1),
    }
    if follower is not None:
        got = results.get(timeout=args.seconds + 30)
        follower.join(30)
        figures["followers"] = followers
        figures["followers_min_entries"] = min(got)
        figures["followers_all_complete"] = min(got) >= written
    page.close()
    return figures, latencies


def write_report(results: Dict[str, Any], out: Path) -> None:
    f = results["figures"]
    lines = [
        "# raptor web benchmark",
        "",
        f"`{results['command']}` on {results['machine']['cpus']} CPUs ({results['machine']['cpu']}), "
        f"{results['machine']['redis']}, {results['browser']}, {results['date']}.",
        "",
        f"{f['hosts']:,} hosts x {f['programs']} programs ({f['hosts'] * f['programs']:,} processes); "
        f"{f['rate']:,} transitions/s for {f['seconds']} s.",
        "",
        "| figure | value | target |",
        "| --- | --- | --- |",
    ]
    for key, (label, target) in TARGETS.items():
        lines.append(f"| {label} | {f[key]} | {target} |")
    lines += [
        f"| first render, worst of 5 (s) | {f['first_render_max_s']} | |",
        f"| event to screen p50 / max (ms) | {f['latency_p50_ms']} / {f['latency_max_ms']} | |",
        f"| server CPU, one page (% of one core) / RSS max (MB) | {f['server_cpu_percent']} / "
        f"{f['server_rss_mb_max']} | |",
        f"| server CPU with {f['followers']} followers + the page (% of one core) / RSS max (MB) | "
        f"{f['followers_server_cpu_percent']} / {f['followers_server_rss_mb_max']} | |",
        f"| followers that got every entry | {f['followers_all_complete']} (fewest: "
        f"{f['followers_min_entries']:,} of {f['entries_written']:,}) | all |",
        f"| page: entries applied / host reloads / full reloads / disconnects / script errors | "
        f"{f['entries_on_page']:,} / {f['page_reloads']} / {f['page_resets']} / {f['page_disconnects']} / "
        f"{f['page_script_errors']} | all / 0 / 0 / 0 / 0 |",
        "",
        "How to read it: *first render* is a new Chromium page from `goto` to the fleet table drawn: the "
        "page, `/api/fleet` (every snapshot read from Redis and sent) and the first frame. *Event to screen* "
        "is measured by the page itself: for each entry, the time of the first frame drawn after the entry "
        "was applied minus the entry id's time (Redis' clock when the writer's XADD ran; one machine, one "
        "clock), over every entry of the window. The followers are plain HTTP clients reading "
        "`/api/events` (they parse nothing but count entries), not browsers: what they cost is the "
        "server's, which is what the CPU and RSS columns show (the server's process, from /proc). The "
        "writer, the followers, Chromium and the server share the machine's 2 cores.",
        "",
        "![web](web.png)",
        "",
    ]
    (out / "web.md").write_text("\n".join(lines), encoding="utf-8")

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for key, label in (("latencies_one", "one page"), ("latencies_followers", f"+ {f['followers']} followers")):
        values = sorted(results[key])
        if values:
            left.plot(values, [i / len(values) for i in range(len(values))], label=label)
    left.axvline(1000, color="tab:red", linestyle="--", label="target p99 1 s")
    left.set_xlabel("event to screen (ms)")
    left.set_ylabel("fraction of entries")
    left.set_title(f"{f['rate']:,} transitions/s, {f['hosts']:,} hosts x {f['programs']}")
    left.legend()
    right.bar(range(1, len(f["first_render_series_s"]) + 1), f["first_render_series_s"], color="tab:blue")
    right.axhline(2, color="tab:red", linestyle="--", label="target 2 s")
    right.set_xlabel("page load")
    right.set_ylabel("s")
    right.set_title("first render of the fleet page")
    right.legend()
    fig.tight_layout()
    fig.savefig(out / "web.png", dpi=110)


def main(argv: Optional[List[str]] = None) -> int:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 (the browser extra)

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--programs", type=int, default=50)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--followers", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    figures: Dict[str, Any] = {k: getattr(args, k) for k in ("hosts", "programs", "rate", "seconds")}
    with tempfile.TemporaryDirectory() as workdir, RedisServer(Path(workdir) / "redis") as server:
        fill(server.client(), args.hosts, args.programs)
        with WebServer(Path(workdir) / "web", server.url) as web, sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            version = browser.version
            renders = first_renders(browser, web.url)
            figures["first_render_series_s"] = [round(r, 3) for r in renders]
            figures["first_render_median_s"] = round(statistics.median(renders), 2)
            figures["first_render_max_s"] = round(max(renders), 2)
            one, latencies_one = stream_latency(browser, web, server.port, args, 0)
            figures.update(one)
            more, latencies_more = stream_latency(browser, web, server.port, args, args.followers)
            figures.update({f"followers_{k}" if k.startswith(("latency", "server")) else k: v for k, v in more.items()})
            browser.close()
    results = {
        "command": " ".join(["python -m bench.web", *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": machine(),
        "browser": f"Chromium {version}",
        "figures": figures,
        "latencies_one": latencies_one,
        "latencies_followers": latencies_more,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "web.json").write_text(json.dumps(results) + "\n", encoding="utf-8")
    write_report(results, args.out)
    print(json.dumps({k: v for k, v in figures.items() if not k.endswith("series_s")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
