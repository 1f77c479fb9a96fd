"""raptor alert's latency: from a transition written to the fleet stream to the notice that
tells of it, received by an HTTP receiver, under a sustained stream of events.

    .venv/bin/python -m bench.alert [--rate 1000] [--fatal-rate 20] [--seconds 20] [--out bench/results]

Everything real, on loopback: a redis-server of its own, ``raptor alert`` (its own
process, the CLI), Apprise posting to an HTTP receiver (``json://``). A writer process
appends *rate* transitions a second to the fleet stream, as listeners write them; of
those, *fatal-rate* a second are a new process entering FATAL (each a new incident), the
rest RUNNING/STARTING flips that open nothing. The alerter runs with ``group_window:
0.5s`` and a rate limit above what is sent. For each FATAL, the latency is the time its
notice arrived at the receiver minus the entry id's time (Redis' clock at XADD; one
machine). p50, p99, max; and whether every FATAL was told exactly once.

Writes ``alert.json``, ``alert.md`` and ``alert.png`` to --out.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import matplotlib
import redis

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.environment import machine
from harness import BIN, RedisServer, wait_for
from harness.receivers import HttpReceiver
from raptor import keys
from raptor.messages import history_entry, state_message
from raptor.publisher.process_table import blank_info

HOSTS = 100


def write(port: int, rate: int, fatal_rate: int, seconds: float) -> None:
    """The writer: *rate* transitions a second in batches every 20 ms (as listeners
    write), *fatal_rate* of them a new process going FATAL."""
    client = redis.Redis(host="127.0.0.1", port=port)
    tick = 0.02
    total = int(rate * seconds)
    fatal_every = max(1, rate // max(1, fatal_rate))
    started = time.monotonic()
    count = 0
    seq = [0] * HOSTS
    while count < total:
        pipe = client.pipeline(transaction=True)
        for _ in range(min(max(1, round(rate * tick)), total - count)):
            host_index = count % HOSTS
            seq[host_index] += 1
            fatal = count % fatal_every == 0
            name = f"crash{count:07d}" if fatal else f"worker{(count // HOSTS) % 50:02d}"
            info: Dict[str, Any] = dict(blank_info(name, name))
            state = "FATAL" if fatal else ("RUNNING" if count % 2 else "STARTING")
            info.update(
                statename=state, state={"FATAL": 200, "RUNNING": 20, "STARTING": 10}[state], now=int(time.time())
            )
            message = state_message(
                f"h{host_index:03d}",
                info,  # type: ignore[arg-type]
                event="PROCESS_STATE_" + state,
                from_state="BACKOFF" if fatal else "STARTING",
                seq=seq[host_index],
                run_id=f"r{host_index:011d}",
            )
            pipe.xadd(keys.FLEET_HISTORY, history_entry(message))
            count += 1
        pipe.execute()
        behind = started + count / rate - time.monotonic()
        if behind > 0:
            time.sleep(behind)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--fatal-rate", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir, RedisServer(Path(workdir) / "redis") as server:
        receiver = HttpReceiver().start()
        config = Path(workdir) / "alert.yml"
        config.write_text(
            f'notify: {{hook: "json://127.0.0.1:{receiver.port}/hook"}}\n'
            "group_window: 0.5s\nrate_limit: {max: 100000, per: 1m}\n"
            "rules:\n  - {kind: fatal, remind_every: 0}\n"
        )
        command = [str(BIN / "raptor"), "alert", "--redis-url", server.url, "--config", str(config)]
        with open(Path(workdir) / "alert.log", "ab") as log:
            alerter = subprocess.Popen([*command, "--consumer", "bench"], stdout=log, stderr=subprocess.STDOUT)
        client = server.client()
        try:
            wait_for(lambda: client.get("raptor_alert:raptor-alert:leader"), 20, "the alerter to lead")
            writer = multiprocessing.Process(target=write, args=(server.port, args.rate, args.fatal_rate, args.seconds))
            writer.start()
            writer.join(args.seconds + 120)
            fatals = {
                f[b"name"].decode(): int(i.decode().split("-")[0]) / 1000
                for i, f in client.xrange(keys.FLEET_HISTORY)
                if f[b"event"] == b"PROCESS_STATE_FATAL"
            }

            def told() -> Dict[str, List[float]]:
                found: Dict[str, List[float]] = {}
                for body, at in zip(list(receiver.bodies), list(receiver.arrivals)):
                    names = [
                        line.split()[2].rstrip(":") for line in body["message"].splitlines() if line.startswith("- ")
                    ]
                    if not names and body["title"].startswith("[raptor] fatal: "):
                        names = [body["title"].rsplit(" ", 1)[1]]
                    for name in names:
                        found.setdefault(name, []).append(at)
                return found

            wait_for(lambda: set(told()) >= set(fatals), 60, "a notice for every FATAL")
        finally:
            alerter.terminate()
            alerter.wait(10)
            receiver.stop()
    seen = told()
    series = sorted((at, (min(seen[name]) - at) * 1000) for name, at in fatals.items())
    latencies = sorted(latency for _, latency in series)
    figures = {
        "rate": args.rate,
        "fatal_rate": args.fatal_rate,
        "seconds": args.seconds,
        "fatals": len(fatals),
        "notices": len(receiver.bodies),
        "told_once": all(len(seen[name]) == 1 for name in fatals),
        "latency_p50_ms": round(statistics.median(latencies), 1),
        "latency_p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
        "latency_max_ms": round(latencies[-1], 1),
    }
    command_text = " ".join(["python -m bench.alert", *(sys.argv[1:] if argv is None else argv)])
    results = {"command": command_text, "machine": machine(), "figures": figures}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "alert.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    m = results["machine"]
    lines = [
        "# raptor alert benchmark",
        "",
        f"`{command_text}` on {m['cpus']} CPUs ({m['cpu']}), {m['redis']}, {m['date']}.",
        "",
        f"{args.rate} transitions/s for {args.seconds:.0f} s into the fleet stream, {args.fatal_rate}/s of them a new "
        "process entering FATAL; `raptor alert` (its own process) with `group_window: 0.5s`, Apprise posting to an "
        "HTTP receiver on loopback.",
        "",
        "| figure | value | target |",
        "| --- | --- | --- |",
        f"| event to notice received, p99 (ms) | {figures['latency_p99_ms']} | <= 1000 |",
        f"| event to notice received, p50 / max (ms) | {figures['latency_p50_ms']} / {figures['latency_max_ms']} | |",
        f"| FATALs written / each told exactly once | {figures['fatals']:,} / {figures['told_once']} | all / True |",
        f"| notices received | {figures['notices']:,} | |",
        "",
        "How to read it: the latency of each FATAL is the arrival of the first notice that names it minus its "
        "entry id's time (Redis' clock when the writer's XADD ran); the group window (0.5 s) is part of it: what "
        "one rule says within it is one notice. The writer, Redis, the alerter and the receiver share the "
        "machine's 2 cores. The plot: each FATAL's latency against when it was written; a rising line would be "
        "an alerter falling behind.",
        "",
        "![alert](alert.png)",
        "",
    ]
    (args.out / "alert.md").write_text("\n".join(lines), encoding="utf-8")
    plot(series, figures, args.out / "alert.png")
    print("\n".join(lines))
    return 0


def plot(series: List[Any], figures: Dict[str, Any], out: Path) -> None:
    start = series[0][0]
    fig, axes = plt.subplots(figsize=(8, 3.6))
    axes.plot([at - start for at, _ in series], [ms for _, ms in series], ".", markersize=3, label="one FATAL")
    axes.axhline(1000, color="red", linestyle="--", linewidth=1, label="target p99 (1 s)")
    axes.axhline(figures["latency_p99_ms"], color="grey", linestyle=":", linewidth=1, label="measured p99")
    axes.set_xlabel("when the FATAL was written (s into the run)")
    axes.set_ylabel("event to notice received (ms)")
    axes.set_title(f"raptor alert at {figures['rate']:,} transitions/s, {figures['fatal_rate']} FATAL/s")
    axes.set_ylim(0, max(1100, max(ms for _, ms in series) * 1.1))
    axes.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
