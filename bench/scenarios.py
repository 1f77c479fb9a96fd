"""The benchmark scenarios, each against a real supervisord and a real redis-server.

``Bench`` holds what every scenario shares (the Redis server, the listeners'
virtualenvs, the work directory); a scenario returns the figures of one run, and the
``*_figures`` functions below reduce several runs to medians. Variants:

- ``raptor``: the working tree's proc_publisher with the ``buffer_size`` the role
  installs for that many programs (see ``role_buffer_size``);
- ``baseline``: the proc_publisher of another git ref (``--baseline``), same buffer;
- ``seed_config``: the working tree's listener with the seed's ``buffer_size`` 10;
- ``sync_getallprocessinfo``: bench/sync_listener.py, which works the way the original
  did, with raptor's ``buffer_size`` so that the architecture is what differs;
- ``vr_agent_2_0_0``: the original from PyPI, run as it is.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import redis

from bench.environment import HOST, LARGE, ROOT, baseline_venv, listener_venv, median, role_buffer_size, rss_mb, short
from harness import (
    Collector,
    ListenerSpec,
    ProgramSpec,
    RedisServer,
    Supervisord,
    snapshot_differences,
    velociraptor_names,
    wait_for,
)
from raptor.consumer.fleet import Fleet
from raptor.consumer.follow import Follower
from raptor.keys import DEFAULT_CHANNEL, META_RUN_ID, meta_key, snapshot_key

# Variants whose listener is a proc_publisher console script in a virtualenv.
VENV_LISTENERS = ("raptor", "seed_config", "baseline")


class Bench:
    def __init__(
        self, quick: bool, runs: int, workdir: Path, redis_spec: str = "", baseline: Optional[str] = None
    ) -> None:
        self.quick = quick
        self.publisher = listener_venv(workdir, redis_spec)
        # The baseline's package layout may differ: only its console script is ever run.
        self.baseline: Optional[Dict[str, Any]] = baseline_venv(workdir, baseline, redis_spec) if baseline else None
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

    def listener_command(self, variant: str, command: Optional[str]) -> str:
        if variant == "sync_getallprocessinfo":
            return f"{sys.executable} -m bench.sync_listener"
        if variant == "vr_agent_2_0_0":
            assert command, "vr_agent needs its script"
            return command
        if variant == "baseline":
            assert self.baseline, "no --baseline given"
            return str(self.baseline["script"])
        return str(self.publisher)

    def supervisord(
        self,
        name: str,
        variant: str,
        programs: Optional[int] = None,
        *,
        listener_command: Optional[str] = None,
        program_commands: Optional[Dict[str, str]] = None,
        program_options: Optional[Dict[str, str]] = None,
    ) -> Supervisord:
        count = programs or self.programs
        listener = self.listener_command(variant, listener_command)
        # Only the sync baseline runs from this checkout; a venv's listener must not see
        # the checkout on its path, or the --baseline ref would run the working tree's code.
        path = {} if variant in VENV_LISTENERS else {"PYTHONPATH": str(ROOT)}
        self.client.flushall()
        return Supervisord(
            self.workdir / f"{variant}-{name}-{time.monotonic_ns()}",
            velociraptor_names(count),
            self.redis.url,
            hostname=HOST,
            program=ProgramSpec(group="fleet", commands=program_commands or {}, options=program_options or {}),
            listener=ListenerSpec(
                command=listener,
                buffer_size=10 if variant == "seed_config" else role_buffer_size(count),
                env={**path, **json.loads(os.environ.get("RAPTOR_BENCH_LISTENER_ENV", "{}"))},
            ),
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

    def listener_meta(self) -> Dict[str, str]:
        raw: Dict[bytes, bytes] = self.client.hgetall(meta_key(HOST))  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in raw.items()}

    def new_run(self, old_run: Optional[str]) -> bool:
        return self.listener_meta().get(META_RUN_ID) != old_run

    def acks_reported(self, least: float) -> Dict[str, str]:
        """The listener's record once it counts *least* acks since they were reset (else empty)."""
        meta = self.listener_meta()
        return meta if int(meta.get("acks", 0)) >= least else {}

    # -- scenarios -------------------------------------------------------------

    def start_and_restart_all(self, variant: str, record_burst: bool) -> Dict[str, Any]:
        """Start with N programs, then `supervisorctl restart all`.

        With *record_burst*, also the burst's publishing: its messages and when the last
        arrived (``burst_*``); the first recorded run of each variant is kept for the plot."""
        sup = self.supervisord("burst", variant)
        collector = Collector(self.redis.port, channel=DEFAULT_CHANNEL).start()
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
            figures: Dict[str, Any] = {
                "overflow_start": overflow_start,
                "overflow_restart": sup.discarded_events() - overflow_start,
                "converge_after_burst_s": converge,
                "restart_all_s": round(time.monotonic() - t0, 3),
            }
            if record_burst:  # until the channel has been quiet for a second
                count = -1
                deadline = time.monotonic() + 60
                while count != len(collector.snapshot()) and time.monotonic() < deadline:
                    count = len(collector.snapshot())
                    time.sleep(1.0)
                arrivals = [m["_received"] - t0 for m in collector.snapshot()[before:] if "_received" in m]
                self.bursts.setdefault(variant, arrivals)
                figures["burst_messages"] = len(arrivals)
                figures["burst_last_message_s"] = round(max(arrivals), 3) if arrivals else None
            return figures
        finally:
            collector.stop()
            sup.stop()

    def acks(self, variant: str) -> Dict[str, Any]:
        """Ack p50/p99 inside the listener over a group restart, Redis healthy then frozen."""
        sup = self.supervisord("acks", variant)
        try:
            sup.start()
            wait_for(sup.programs_running, 120, "programs to run")
            figures: Dict[str, Any] = {}
            for label in ("healthy", "frozen"):
                old_run = self.listener_meta().get(META_RUN_ID)
                assert sup.ctl("restart", "proc_publisher").returncode == 0  # a fresh reservoir of acks
                if variant in ("raptor", "baseline"):
                    wait_for(partial(self.new_run, old_run), 10, "the listener's new run")
                self.client.hdel(meta_key(HOST), "acks")
                frozen = label == "frozen"
                server = self.redis.process
                assert server is not None
                if frozen:
                    server.send_signal(signal.SIGSTOP)
                burst = sup.ctl_in_background("restart", "fleet:*")
                # A listener that waits for the frozen Redis holds the burst up: thaw after 5 s.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    burst.wait(5 if frozen else 120)
                if frozen:
                    server.send_signal(signal.SIGCONT)
                burst.wait(300)
                wait_for(sup.programs_running, 120, "programs to run")
                meta = wait_for(partial(self.acks_reported, 4 * self.programs * 0.9), 120, f"{variant}'s acks")
                figures[f"ack_p50_{label}_ms"] = float(meta["ack_p50_ms"])
                figures[f"ack_p99_{label}_ms"] = float(meta["ack_p99_ms"])
            return figures
        except AssertionError as exc:
            if variant != "baseline":
                raise
            # An older listener may not report its acks (or its run): say so, go on.
            self.log(f"baseline: no ack figures ({exc})")
            return dict.fromkeys(ACK_KEYS)
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
                return set(names) <= running and self.client.hlen(snapshot_key(HOST)) > count

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
        self.log(f"{variant}: rss at {self.programs} programs {short(figures)}")
        large = self.flapping_rss(variant, self.large_programs, duration)
        self.log(f"{variant}: rss at {self.large_programs} programs {short(large)}")
        figures.update(large_rss(large))
        return figures

    def fleet_ingest(self) -> Dict[str, Any]:
        """Many simulated hosts publish; one consumer (raptor's Follower, on the history
        stream) applies every message."""
        hosts, per_host = (50, 400) if self.quick else (200, 1500)
        total = hosts * per_host
        self.client.flushall()
        follower = Follower(redis.Redis(host="127.0.0.1", port=self.redis.port), fleet=Fleet())
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
        wait_for(lambda: follower.connected, 10, "the consumer to connect")
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
        collector = Collector(self.redis.port, channel=DEFAULT_CHANNEL).start()
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


# -- several runs to one set of figures -------------------------------------------

ACK_KEYS = ("ack_p50_healthy_ms", "ack_p99_healthy_ms", "ack_p50_frozen_ms", "ack_p99_frozen_ms")
# The names the reports use for the acks scenario's figures.
ACK_NAMES = {
    "ack_p99_healthy_ms": "ack_p99_ms",
    "ack_p50_healthy_ms": "ack_p50_ms",
    "ack_p99_frozen_ms": "ack_p99_redis_frozen_ms",
    "ack_p50_frozen_ms": "ack_p50_redis_frozen_ms",
}


def burst_figures(bursts: List[Dict[str, Any]]) -> Dict[str, Any]:
    figures = {
        "overflow_start_200": median([b["overflow_start"] for b in bursts]),
        "overflow_restart_200": median([b["overflow_restart"] for b in bursts]),
        "converge_after_burst_s": median([b["converge_after_burst_s"] for b in bursts]),
        "restart_all_s": median([b["restart_all_s"] for b in bursts]),
    }
    recorded = [b for b in bursts if "burst_messages" in b]
    if len(recorded) == len(bursts):  # only the comparison records every run's burst
        figures["burst_messages"] = median([b["burst_messages"] for b in bursts])
        figures["burst_last_message_s"] = median([b["burst_last_message_s"] for b in bursts])
    return figures


def ack_figures(acks: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {name: median([a[key] for a in acks]) for key, name in ACK_NAMES.items()}


def outage_figures(outages: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "converge_after_outage_s": median([o["converge_after_outage_s"] for o in outages]),
        "outage_s": outages[0]["outage_s"],
    }


def large_rss(figures: Dict[str, Any]) -> Dict[str, Any]:
    """The large host's RSS figures, under the ``rss_1000_`` prefix."""
    return {"rss_1000_" + key.removeprefix("rss_"): value for key, value in figures.items()}
