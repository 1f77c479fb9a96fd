"""raptor's benchmarks: the design's targets, side by side with the baselines.

    .venv/bin/python -m bench.run [--quick] [--runs N] [--out bench/results]
    .venv/bin/python -m bench.run --only-rss [--rss-programs N] [--rss-seconds S]

Everything real, on loopback: a supervisord with 200 programs, a redis-server, the
listener under test. Variants:

- ``raptor``: proc_publisher with the ``buffer_size`` the role installs for that many
  programs (2048 for 200: see ``role_buffer_size``);
- ``seed_config``: the same listener with the seed's configuration (``buffer_size`` 10);
- ``sync_getallprocessinfo``: bench/sync_listener.py, which works the way the original
  did (two ``getAllProcessInfo()`` and synchronous Redis writes per event), with
  raptor's ``buffer_size`` so that the architecture is what differs;
- ``vr_agent_2_0_0``: the original from PyPI, run as it is.

The listener's memory is measured twice, with 200 and with 1,000 programs, a quarter
of them flapping for 10 minutes each. ``--only-rss`` runs only that scenario and prints
its figures (``--rss-programs`` one size only, ``--rss-seconds`` a shorter run).

Writes ``latest.json``, ``README.md`` (table) and ``burst.png`` to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import redis

from raptor.consumer.fleet import Fleet
from raptor.consumer.follow import Follower
from raptor.publisher.listener import buffer_size_for
from tests.support import (
    Collector,
    RedisServer,
    Supervisord,
    snapshot_differences,
    velociraptor_names,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]
HOST = "benchhost"
TARGETS = {
    "overflow_start_200": ("events discarded: start with 200 programs", "0"),
    "overflow_restart_200": ("events discarded: restart all of 200", "0"),
    "converge_after_burst_s": ("burst end until snapshot = real state (s)", "<= 1"),
    "ack_p99_ms": ("ack time p99, Redis healthy (ms)", "<= 1"),
    "ack_p99_redis_frozen_ms": ("ack time p99, Redis frozen (ms)", "<= 1"),
    "converge_after_outage_s": ("Redis outage mid-burst: return until snapshot correct (s)", "<= 2"),
    "rss_mb": ("listener RSS after 10 min of flapping, 200 programs (MB)", "<= 40, flat"),
    "rss_1000_mb": ("listener RSS after 10 min of flapping, 1,000 programs (MB)", "<= 48, flat"),
    "fleet_ingest_msgs_per_s": ("fleet view ingest, one consumer (msg/s)", ">= 50000"),
}


LARGE = 1000  # programs of the large host's RSS figure (100 in --quick)


def role_buffer_size(programs: int) -> int:
    """What the role templates when proc_publisher_buffer_size is 0 (roles/proc_publisher/vars)."""
    return buffer_size_for(programs)


class Bench:
    def __init__(self, quick: bool, runs: int, workdir: Path, redis_spec: str = "") -> None:
        self.quick = quick
        self.publisher = listener_venv(workdir, redis_spec)
        self.runs = runs
        self.workdir = workdir
        self.programs = 40 if quick else 200
        self.large_programs = 100 if quick else LARGE
        # No output-buffer limit for subscribers: the ingest figure measures the consumer,
        # which Redis would otherwise disconnect once it lags 32 MB behind.
        self.redis = RedisServer(workdir / "redis", extra_args=["--client-output-buffer-limit", "pubsub 0 0 0"]).start()
        self.client = self.redis.client()
        self.bursts: Dict[str, List[float]] = {}

    def log(self, text: str) -> None:
        print(f"[{datetime.datetime.now():%H:%M:%S}] {text}", flush=True)

    def supervisord(self, name: str, variant: str, programs: Optional[int] = None, **options: Any) -> Supervisord:
        count = programs or self.programs
        listener = {
            "sync_getallprocessinfo": f"{sys.executable} -m bench.sync_listener",
            "vr_agent_2_0_0": options.pop("listener_command", None),
        }.get(variant, str(self.publisher))
        self.client.flushall()
        return Supervisord(
            self.workdir / f"{variant}-{name}-{time.monotonic_ns()}",
            velociraptor_names(count),
            self.redis.url,
            hostname=HOST,
            buffer_size=10 if variant == "seed_config" else role_buffer_size(count),
            listener_command=listener,
            group="fleet",
            listener_env={"PYTHONPATH": str(ROOT), **json.loads(os.environ.get("RAPTOR_BENCH_LISTENER_ENV", "{}"))},
            **options,
        )

    def converged(self, sup: Supervisord) -> bool:
        return not snapshot_differences(self.client, HOST, sup)

    def time_until(self, condition: Callable[[], bool], limit: float) -> Optional[float]:
        started = time.monotonic()
        try:
            wait_for(condition, limit, "convergence", interval=0.02)
        except AssertionError:
            return None
        return round(time.monotonic() - started, 3)

    # -- scenarios -------------------------------------------------------------

    def start_and_restart_all(self, variant: str, record_burst: bool) -> Dict[str, Any]:
        """Start with N programs, then `supervisorctl restart all`."""
        sup = self.supervisord("burst", variant)
        collector = Collector(self.redis.port).start()
        try:
            sup.start()
            wait_for(sup.programs_running, 120, "programs to run")
            wait_for(lambda: self.converged(sup), 30 if variant != "vr_agent_2_0_0" else 1, "start")
            overflow_start = sup.discarded_events()
            before = len(collector.snapshot())
            t0 = time.monotonic()
            result = sup.ctl("restart", "all")
            assert result.returncode == 0, result.stderr[-500:]
            wait_for(sup.programs_running, 120, "programs to run again")
            converge = self.time_until(lambda: self.converged(sup), 10 if self.quick else 70)
            if record_burst:  # until the channel has been quiet for a second
                count = -1
                deadline = time.monotonic() + 60
                while count != len(collector.snapshot()) and time.monotonic() < deadline:
                    count = len(collector.snapshot())
                    time.sleep(1.0)
                arrivals = [m["_received"] - t0 for m in collector.snapshot()[before:] if "_received" in m]
                self.bursts[variant] = arrivals
            return {
                "overflow_start": overflow_start,
                "overflow_restart": sup.discarded_events() - overflow_start,
                "converge_after_burst_s": converge,
                "restart_all_s": round(time.monotonic() - t0, 3),
            }
        finally:
            collector.stop()
            sup.stop()

    def listener_meta(self) -> Dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.client.hgetall(f"host_meta:{HOST}").items()}

    def acks(self, variant: str) -> Dict[str, Any]:
        """Ack p50/p99 inside the listener over a group restart, Redis healthy then frozen."""
        sup = self.supervisord("acks", variant)
        try:
            sup.start()
            wait_for(sup.programs_running, 120, "programs to run")
            figures: Dict[str, Any] = {}
            for label in ("healthy", "frozen"):
                old_run = self.listener_meta().get("run_id")
                assert sup.ctl("restart", "proc_publisher").returncode == 0  # a fresh reservoir of acks
                if variant == "raptor":
                    wait_for(lambda old=old_run: self.listener_meta().get("run_id") != old, 10, "the new listener run")
                self.client.hdel(f"host_meta:{HOST}", "acks")
                frozen = label == "frozen"
                if frozen:
                    assert self.redis.process is not None
                    self.redis.process.send_signal(signal.SIGSTOP)
                burst = sup.ctl_in_background("restart", "fleet:*")
                # A listener that waits for the frozen Redis holds the burst up: thaw after 5 s.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    burst.wait(5 if frozen else 120)
                if frozen:
                    self.redis.process.send_signal(signal.SIGCONT)
                burst.wait(300)
                wait_for(sup.programs_running, 120, "programs to run")
                expected = 4 * self.programs * 0.9
                meta = wait_for(
                    lambda least=expected: (m := self.listener_meta()) and int(m.get("acks", 0)) >= least and m,
                    120,
                    f"{variant} to report its acks",
                )
                figures[f"ack_p50_{label}_ms"] = float(meta["ack_p50_ms"])
                figures[f"ack_p99_{label}_ms"] = float(meta["ack_p99_ms"])
            return figures
        finally:
            if self.redis.process is not None:
                self.redis.process.send_signal(signal.SIGCONT)
            sup.stop()

    def outage(self, variant: str) -> Dict[str, Any]:
        """Redis killed mid-burst, back after the outage; time until the snapshot is right."""
        sup = self.supervisord("outage", variant)
        down_for = 3.0 if self.quick else 60.0
        try:
            sup.start()
            wait_for(sup.programs_running, 120, "programs to run")
            wait_for(lambda: self.converged(sup), 30, "start")
            burst = sup.ctl_in_background("restart", "fleet:*")
            time.sleep(0.3)
            self.redis.stop(kill=True)
            time.sleep(down_for)
            burst.wait(300)
            wait_for(sup.programs_running, 120, "programs to run")
            self.redis.start()
            self.client = self.redis.client()
            converge = self.time_until(lambda: self.converged(sup), 10 if self.quick else 70)
            return {"converge_after_outage_s": converge, "outage_s": down_for}
        finally:
            sup.stop()

    def flapping_rss(
        self, variant: str, programs: Optional[int] = None, duration: Optional[float] = None
    ) -> Dict[str, Any]:
        """N programs, a quarter of them flapping; listener RSS sampled over the run.

        Figures: RSS once every program has started (``rss_start_mb``), at the end
        (``rss_mb``), the maximum and the growth over the second half (flat: ~0)."""
        count = programs or self.programs
        if duration is None:
            duration = 15.0 if self.quick else 600.0
        names = velociraptor_names(count)
        # The flappers hold still until every program has started, then exit after 1 s and
        # are restarted, for ever: a start of 1,000 programs while 250 flap takes minutes.
        go = self.workdir / f"flap-{time.monotonic_ns()}"
        flapper = f"sh -c 'while [ ! -e {go} ]; do sleep 2; done; sleep 1'"
        flapping = dict.fromkeys(names[: count // 4], flapper)
        options = {"startsecs": "0", "autorestart": "true"}
        sup = self.supervisord("rss", variant, programs=count, program_commands=flapping, program_options=options)
        try:
            sup.start()
            wait_for(lambda: sup.listener_info()["pid"], 30, "the listener")
            pid = int(sup.listener_info()["pid"])

            def started_up() -> bool:
                running = {n for n, info in sup.truth().items() if info["statename"] == "RUNNING"}
                return set(names) <= running and self.client.hlen(f"host_procs:{HOST}") > count

            began = time.monotonic()
            wait_for(started_up, 60 + count / 2, "every program to run and be in the snapshot", interval=1.0)
            start_s = round(time.monotonic() - began, 1)
            start_mb = rss_mb(pid)
            go.touch()
            series: List[List[float]] = []
            started = time.monotonic()
            while time.monotonic() - started < duration:
                series.append([round(time.monotonic() - started, 1), rss_mb(pid)])
                time.sleep(1.0 if duration < 120 else 5.0)
            series.append([round(time.monotonic() - started, 1), rss_mb(pid)])
            events = int(self.listener_meta().get("events", 0) or 0)
            tail = [mb for _, mb in series[len(series) // 2 :]]
            return {
                "rss_programs": count,
                "rss_buffer_size": role_buffer_size(count),
                "rss_start_mb": start_mb,
                "rss_start_s": start_s,  # from the listener's start until every program ran
                "rss_mb": series[-1][1],
                "rss_max_mb": max(mb for _, mb in series),
                "rss_growth_second_half_mb": round(tail[-1] - tail[0], 2),
                "flapping_s": duration,
                "flapping_events": events,
                "listener_restarts": sup.log_text().count("exited: proc_publisher"),
                "rss_series": series,
            }
        finally:
            sup.stop()

    def rss_figures(self, variant: str, duration: Optional[float] = None) -> Dict[str, Any]:
        """The memory figures at 200 programs (``rss_*``) and 1,000 (``rss_1000_*``)."""
        figures = self.flapping_rss(variant, self.programs, duration)
        self.log(f"{variant}: rss at {self.programs} programs {_short(figures)}")
        large = self.flapping_rss(variant, self.large_programs, duration)
        self.log(f"{variant}: rss at {self.large_programs} programs {_short(large)}")
        figures.update({"rss_1000_" + key.removeprefix("rss_"): value for key, value in large.items()})
        return figures

    def fleet_ingest(self) -> Dict[str, Any]:
        """Many simulated hosts publish; one consumer (raptor's Follower) applies every message."""
        hosts, per_host = (50, 400) if self.quick else (200, 1500)
        total = hosts * per_host
        self.client.flushall()
        follower = Follower(redis.Redis(host="127.0.0.1", port=self.redis.port), "proc_events", Fleet())
        done = threading.Event()
        times: List[float] = []

        def on_change(message: Dict[str, Any]) -> None:
            if not times:
                times.append(time.perf_counter())
            if follower.messages >= total:
                times.append(time.perf_counter())
                done.set()

        thread = threading.Thread(
            target=follower.run, kwargs={"on_change": on_change, "should_stop": done.is_set, "poll": 0.05}, daemon=True
        )
        thread.start()
        wait_for(lambda: self.client.pubsub_numsub("proc_events")[0][1] > 0, 10, "the consumer to subscribe")
        publisher = subprocess.Popen(
            [sys.executable, "-m", "bench.publish_fleet", str(self.redis.port), str(hosts), str(per_host)],
            cwd=ROOT,
        )
        publisher.wait(300)
        finished = done.wait(120)
        elapsed = (times[-1] - times[0]) if finished and len(times) == 2 else None
        return {
            "fleet_ingest_msgs_per_s": round(total / elapsed) if elapsed else None,
            "fleet_ingest_messages": total,
            "fleet_ingest_hosts": hosts,
            "fleet_ingest_received": follower.messages,
            "fleet_ingest_gaps_resynced": follower.resyncs,
        }

    def vr_agent(self) -> Dict[str, Any]:
        """The original, from PyPI, as it is: record what happens."""
        venv = self.workdir / "vr-agent-venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        install = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "vr.agent==2.0.0", "vr.common==6.1.1"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if install.returncode != 0:
            return {"result": "could not be installed", "detail": install.stderr[-300:]}
        script = venv / "bin" / "proc_publisher"
        if not script.exists():
            return {"result": "installed, but ships no proc_publisher script"}
        sup = self.supervisord("vr", "vr_agent_2_0_0", listener_command=str(script))
        collector = Collector(self.redis.port).start()
        try:
            sup.start()
            wait_for(sup.programs_running, 120, "programs to run")
            wait_for(lambda: sup.log_text().count("exited: proc_publisher") >= 3, 60, "vr.agent to crash three times")
            stderr = sup.listener_log()
            last_error = [line for line in stderr.splitlines() if line.strip()][-1:] or [""]
            return {
                "result": "crashed and was restarted by supervisord in a loop; published nothing",
                "crashes_in_run": sup.log_text().count("exited: proc_publisher"),
                "messages_published": len(collector.snapshot()),
                "last_error": last_error[0][-200:],
                "overflow_start_200": sup.discarded_events(),
            }
        finally:
            collector.stop()
            sup.stop()


def listener_venv(workdir: Path, redis_spec: str) -> Path:
    """A virtualenv like the role makes on a host: raptor and redis-py, nothing else."""
    subprocess.run(["scripts/wheelhouse.sh"], cwd=ROOT, check=True, capture_output=True, timeout=900)
    venv = workdir / "listener-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    wheels = str(ROOT / "build" / "wheelhouse")
    packages = ["raptor", *([redis_spec] if redis_spec else [])]
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--find-links", wheels, *packages],
        check=True,
        timeout=300,
    )
    return venv / "bin" / "proc_publisher"


def _short(figures: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in figures.items() if not k.endswith("series")}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 2)
    return 0.0


def median(values: List[Optional[float]]) -> Optional[float]:
    known = [v for v in values if v is not None]
    if len(known) < len(values):
        return None  # any run that did not converge makes the figure "did not"
    return round(statistics.median(known), 4)


def raise_open_files_limit(wanted: int = 16384) -> None:
    """supervisord keeps about 5 descriptors per program: 1,000 programs exceed a 1024 soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run_all(
    quick: bool,
    runs: int,
    redis_spec: str,
    *,
    only_rss: bool = False,
    rss_programs: Optional[int] = None,
    rss_seconds: Optional[float] = None,
) -> Dict[str, Any]:
    results: Dict[str, Any] = {}
    raise_open_files_limit()  # inherited by the supervisords
    with tempfile.TemporaryDirectory(prefix="raptor-bench-") as tmp:
        bench = Bench(quick, runs, Path(tmp), redis_spec)
        if only_rss:
            try:
                if rss_programs:
                    return {"raptor": _short(bench.flapping_rss("raptor", rss_programs, rss_seconds))}
                return {"raptor": _short(bench.rss_figures("raptor", rss_seconds))}
            finally:
                bench.redis.stop()
        try:
            for variant in ("raptor", "seed_config", "sync_getallprocessinfo"):
                figures: Dict[str, Any] = {}
                bursts = [bench.start_and_restart_all(variant, record_burst=i == 0) for i in range(runs)]
                bench.log(f"{variant}: bursts {bursts}")
                figures["overflow_start_200"] = median([b["overflow_start"] for b in bursts])
                figures["overflow_restart_200"] = median([b["overflow_restart"] for b in bursts])
                figures["converge_after_burst_s"] = median([b["converge_after_burst_s"] for b in bursts])
                figures["restart_all_s"] = median([b["restart_all_s"] for b in bursts])
                if variant != "seed_config":
                    acks = [bench.acks(variant) for _ in range(runs)]
                    bench.log(f"{variant}: acks {acks}")
                    for key in acks[0]:
                        figures[key] = median([a[key] for a in acks])
                    figures["ack_p99_ms"] = figures.pop("ack_p99_healthy_ms")
                    figures["ack_p50_ms"] = figures.pop("ack_p50_healthy_ms")
                    figures["ack_p99_redis_frozen_ms"] = figures.pop("ack_p99_frozen_ms")
                    figures["ack_p50_redis_frozen_ms"] = figures.pop("ack_p50_frozen_ms")
                    outage = bench.outage(variant)
                    bench.log(f"{variant}: outage {outage}")
                    figures.update(outage)
                results[variant] = figures
            results["raptor"].update(bench.rss_figures("raptor"))
            ingest = bench.fleet_ingest()
            bench.log(f"fleet ingest {ingest}")
            results["raptor"].update(ingest)
            if quick:
                results["vr_agent_2_0_0"] = {"result": "not run in --quick mode (it installs from PyPI)"}
            else:
                results["vr_agent_2_0_0"] = bench.vr_agent()
            bench.log(f"vr.agent: {results['vr_agent_2_0_0']}")
            results["_bursts"] = bench.bursts
        finally:
            bench.redis.stop()
    return results


def machine() -> Dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu": next(
            (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?"
        ),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis": subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False, timeout=30
        ).stdout.strip(),
        "supervisor": __import__("supervisor.options").options.VERSION,
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 programs, short runs: a smoke test")
    parser.add_argument("--runs", type=int, default=3, help="runs of each short scenario (median reported)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--redis-py", default="", help="redis-py requirement for the listener, e.g. 'redis<8'")
    parser.add_argument("--only-rss", action="store_true", help="only the flapping/RSS scenario, printed")
    parser.add_argument("--rss-programs", type=int, help="with --only-rss: this many programs only")
    parser.add_argument("--rss-seconds", type=float, help="with --only-rss: flap this long (default 600)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.only_rss:
        print(
            json.dumps(
                run_all(
                    args.quick,
                    1,
                    args.redis_py,
                    only_rss=True,
                    rss_programs=args.rss_programs,
                    rss_seconds=args.rss_seconds,
                )
            )
        )
        return 0
    results = run_all(args.quick, args.runs, args.redis_py)
    bursts = results.pop("_bursts")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bursts.json").write_text(json.dumps(bursts) + "\n")  # to redraw the plot
    results["meta"] = {
        **machine(),
        "command": "make bench" if not args.quick else "python -m bench.run --quick",
        "quick": args.quick,
        "runs": args.runs,
        "programs": 40 if args.quick else 200,
        "large_programs": 100 if args.quick else LARGE,
        "buffer_size": role_buffer_size(40 if args.quick else 200),
        "duration_s": round(time.monotonic() - started),
        "notes": "medians of `runs` runs; sync_getallprocessinfo runs with raptor's buffer_size",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    from bench.report import write_plot, write_readme  # noqa: PLC0415 (matplotlib only here)

    write_plot(results, bursts, args.out / "burst.png")
    write_readme(results, TARGETS, args.out / "README.md")
    print(f"wrote {args.out}/latest.json, README.md, burst.png in {results['meta']['duration_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
