"""raptor's benchmarks: the design's targets, side by side with the baselines.

    .venv/bin/python -m bench.run [--quick] [--runs N] [--out bench/results]
    .venv/bin/python -m bench.run --only-rss [--rss-programs N] [--rss-seconds S]
    .venv/bin/python -m bench.run --baseline GIT_REF [--with-rss | --only-rss] [--runs N]

Everything real, on loopback: a supervisord with 200 programs, a redis-server, the
listener under test (bench/scenarios.py describes the variants; bench/environment.py
builds the listeners' virtualenvs).

The listener's memory is measured twice, with 200 and with 1,000 programs, a quarter
of them flapping for 10 minutes each. ``--only-rss`` runs only that scenario and prints
its figures (``--rss-programs`` one size only, ``--rss-seconds`` a shorter run).

Writes ``latest.json``, ``bursts.json``, ``README.md`` (table) and ``burst.png`` to --out.

``--baseline GIT_REF`` instead compares the working tree's listener with the listener
of GIT_REF (built from ``git archive``), in one run: every listener scenario (the
burst, the acks with Redis healthy and frozen, the outage; the flapping RSS with
``--with-rss`` or ``--only-rss``) runs for both, interleaved run by run, in alternate
order. Writes ``compare.json``, ``compare.md`` and ``compare.png`` to --out, leaving the
standing results alone, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from bench.environment import (
    LARGE,
    ROOT,
    git,
    machine,
    median,
    raise_open_files_limit,
    role_buffer_size,
    short,
    working_tree,
)
from bench.scenarios import Bench, ack_figures, burst_figures, large_rss, outage_figures

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
# The two sides of a comparison, as variants of Bench.
SIDES = ("baseline", "raptor")


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
                    return {"raptor": short(bench.flapping_rss("raptor", rss_programs, rss_seconds))}
                return {"raptor": short(bench.rss_figures("raptor", rss_seconds))}
            finally:
                bench.redis.stop()
        try:
            for variant in ("raptor", "seed_config", "sync_getallprocessinfo"):
                bursts = [bench.start_and_restart_all(variant, record_burst=i == 0) for i in range(runs)]
                bench.log(f"{variant}: bursts {bursts}")
                figures = burst_figures(bursts)
                if variant != "seed_config":
                    acks = [bench.acks(variant) for _ in range(runs)]
                    bench.log(f"{variant}: acks {acks}")
                    figures.update(ack_figures(acks))
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


def run_compare(
    quick: bool,
    runs: int,
    redis_spec: str,
    baseline: str,
    *,
    listener_scenarios: bool = True,
    rss: bool = False,
    rss_programs: Optional[int] = None,
    rss_seconds: Optional[float] = None,
) -> Dict[str, Any]:
    """Every listener scenario for the baseline and the working tree, interleaved.

    Run i takes the sides in alternate order (baseline first in even runs), so that a
    drift of the machine's load over the run weighs on both alike."""
    raise_open_files_limit()
    per_run: Dict[str, List[Dict[str, Any]]] = {side: [] for side in SIDES}
    results: Dict[str, Any] = {side: {} for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="raptor-bench-") as tmp:
        bench = Bench(quick, runs, Path(tmp), redis_spec, baseline=baseline)
        assert bench.baseline is not None
        bench.log(f"baseline {baseline} = {bench.baseline['commit'][:10]} ({bench.baseline['wheel']})")
        try:
            for i in range(runs if listener_scenarios else 0):
                order = SIDES if i % 2 == 0 else SIDES[::-1]
                run: Dict[str, Dict[str, Any]] = {side: {} for side in SIDES}
                for side in order:
                    run[side].update(burst_figures([bench.start_and_restart_all(side, record_burst=True)]))
                for side in order:
                    run[side].update(ack_figures([bench.acks(side)]))
                for side in order:
                    run[side].update(outage_figures([bench.outage(side)]))
                for side in SIDES:
                    bench.log(f"run {i + 1}/{runs} {side}: {run[side]}")
                    per_run[side].append(run[side])
            for side in SIDES if per_run["raptor"] else ():
                results[side] = {key: median([r[key] for r in per_run[side]]) for key in per_run[side][0]}
            if rss:
                sizes = [rss_programs] if rss_programs else [bench.programs, bench.large_programs]
                for n, programs in enumerate(sizes):
                    for side in SIDES if n % 2 == 0 else SIDES[::-1]:
                        figures = bench.flapping_rss(side, programs, rss_seconds)
                        bench.log(f"{side}: rss at {programs} programs {short(figures)}")
                        results[side].update(figures if n == 0 else large_rss(figures))
            results["per_run"] = per_run
            results["bursts"] = bench.bursts
            results["baseline_build"] = {k: str(v) for k, v in bench.baseline.items() if k != "script"}
        finally:
            bench.redis.stop()
    return results


def compare_main(args: argparse.Namespace, argv: List[str], started: float) -> int:
    results = run_compare(
        args.quick,
        args.runs,
        args.redis_py,
        args.baseline,
        listener_scenarios=not args.only_rss,
        rss=args.only_rss or args.with_rss,
        rss_programs=args.rss_programs,
        rss_seconds=args.rss_seconds,
    )
    programs = 40 if args.quick else 200
    results["meta"] = {
        **machine(),
        "command": "python -m bench.run " + " ".join(argv),
        "compare": True,
        "baseline": results.pop("baseline_build"),
        "working_tree": working_tree(),
        "quick": args.quick,
        "runs": args.runs,
        "programs": programs,
        "large_programs": 100 if args.quick else LARGE,
        "buffer_size": role_buffer_size(programs),
        "duration_s": round(time.monotonic() - started),
        "notes": "medians of `runs` runs, the two sides interleaved; both with the role's buffer_size",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(results, indent=2) + "\n")
    from bench.report import compare_table, write_compare_plot  # noqa: PLC0415 (matplotlib only here)

    table = compare_table(results)
    (args.out / "compare.md").write_text(table)
    write_compare_plot(results, args.out / "compare.png")
    print(table)
    print(f"wrote {args.out}/compare.json, compare.md, compare.png in {results['meta']['duration_s']} s")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 programs, short runs: a smoke test")
    parser.add_argument("--runs", type=int, default=3, help="runs of each short scenario (median reported)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--redis-py", default="", help="redis-py requirement for the listener, e.g. 'redis<8'")
    parser.add_argument("--only-rss", action="store_true", help="only the flapping/RSS scenario, printed")
    parser.add_argument("--rss-programs", type=int, help="with --only-rss: this many programs only")
    parser.add_argument("--rss-seconds", type=float, help="with --only-rss: flap this long (default 600)")
    parser.add_argument(
        "--baseline",
        metavar="GIT_REF",
        help="compare the listener with GIT_REF's, side by side in one run (writes compare.*)",
    )
    parser.add_argument("--with-rss", action="store_true", help="with --baseline: the flapping RSS scenario too")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.with_rss and not args.baseline:
        parser.error("--with-rss goes with --baseline (the standing run always measures RSS)")
    started = time.monotonic()
    if args.baseline:
        git("rev-parse", "--verify", f"{args.baseline}^{{commit}}")  # a bad ref fails before any build
        return compare_main(args, argv, started)
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
