"""Turn bench results into bench/results/README.md and burst.png, or a comparison with a
baseline into compare.md and compare.png (``python -m bench.report [compare.json]`` redraws
those from the JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

VARIANTS = ("raptor", "seed_config", "sync_getallprocessinfo")
LABELS = {
    "raptor": "raptor (buffer {buffer_size})",
    "seed_config": "raptor, seed config (buffer 10)",
    "sync_getallprocessinfo": "per-event getAllProcessInfo",
}
RSS_TARGETS = {"rss_series": 40.0, "rss_1000_series": 48.0}  # MB, design.md: 200 and 1,000 programs


# The end of README.md: how the benchmarks are laid out and how to compare with a baseline.
HOW_TO = [
    "## How to run",
    "",
    "- `make bench` (`python -m bench.run`): this file, `latest.json`, `bursts.json`, `burst.png`. "
    "`--quick` (40 programs, short runs), `--runs N` (runs of each short scenario, default 3), "
    "`--out DIR`, `--redis-py 'redis<8'` (the listener's redis-py).",
    "- `python -m bench.run --only-rss [--rss-programs N] [--rss-seconds S]`: only the flapping "
    "scenario, its figures printed (`rss.json` was made so).",
    "- `make bench-compare BASELINE=REF` (`python -m bench.run --baseline REF`): the working "
    "tree's listener against REF's, in one run (about 15 minutes; `--with-rss` adds the "
    "flapping scenario at 200 and 1,000 programs, 45 minutes more; `--only-rss --baseline REF` "
    "compares only that). Writes `compare.json`, `compare.md`, `compare.png`; the files above "
    "are left alone. `python -m bench.report [compare.json]` redraws the table and the plot.",
    "",
    "How the comparison works: REF is exported with `git archive` and built into a virtualenv "
    "of its own, beside the working tree's (raptor and redis-py only, as on a host); only each "
    "virtualenv's `proc_publisher` script runs, so REF may lay its package out differently. "
    "Both get the role's `buffer_size`. Every listener scenario (the `restart all` burst, the "
    "acks with Redis healthy and frozen, the outage) runs for both sides in each run, in "
    "alternate order (baseline first in odd runs), so a change of the machine's load weighs on "
    "both alike.",
    "",
    "How to read `compare.md`: one row a figure, the median of each side with the lowest and "
    "highest run in brackets, and the ratio working tree / baseline. Every figure is "
    "lower-is-better: above 1 is slower or bigger. Counts (events discarded, messages) are "
    "exact and must be equal or lower; a timing is a regression when its ratio is well above 1 "
    "*and* the two ranges do not overlap (on this VM a single run moves by tens of percent). "
    "The plot shows the first burst of each side and either the RSS over time or each run's "
    "ack p99.",
    "",
    "Code: `bench/run.py` (options, which scenarios run in which order), `bench/scenarios.py` "
    "(the scenarios, one run each, and the medians), `bench/environment.py` (the listeners' "
    "virtualenvs, the machine, RSS), `bench/report.py` (tables and plots), "
    "`bench/sync_listener.py` and `bench/publish_fleet.py` (a baseline listener and a simulated "
    "fleet). Key names and the channel come from `raptor.keys`.",
    "",
]


def label(variant: str, meta: Dict[str, Any]) -> str:
    return LABELS[variant].format(buffer_size=meta.get("buffer_size", 1024))


def _cell(value: Any) -> str:
    if value is None:
        return "did not converge"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def write_readme(results: Dict[str, Any], targets: Dict[str, Tuple[str, str]], path: Path) -> None:
    meta = results["meta"]
    vr = results.get("vr_agent_2_0_0", {})
    lines = [
        "# Benchmark results",
        "",
        f"Made by `{meta['command']}` on {meta['date']}: {meta['cpus']} x {meta['cpu']}, "
        f"{meta['memory_gb']} GB, Linux {meta['kernel']}, Python {meta['python']}, {meta['redis']}, "
        f"supervisor {meta['supervisor']}; {meta['programs']} programs; medians of {meta['runs']} runs "
        f"of each short scenario; {meta['duration_s']} s in all. Shared 2-core VM: expect noise of tens "
        "of percent on the timings, none on the counts.",
        "",
        "| figure | target | " + " | ".join(label(v, meta) for v in VARIANTS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in VARIANTS) + " |",
    ]
    for key, (title, target) in targets.items():
        cells = [_cell(results.get(v, {}).get(key, "-")) for v in VARIANTS]
        lines.append(f"| {title} (`{key}`) | {target} | " + " | ".join(cells) + " |")
    raptor = results["raptor"]
    lines += [
        "",
        f"`vr.agent` 2.0.0 (the original, from PyPI): {vr.get('result', 'not measured')}"
        + (
            f" ({vr.get('crashes_in_run')} crashes, {vr.get('messages_published')} messages published; "
            f"last error: `{vr.get('last_error', '')}`)."
            if "crashes_in_run" in vr
            else "."
        ),
        "",
        "More of raptor's figures: "
        f"ack p50 {raptor.get('ack_p50_ms')} ms healthy / {raptor.get('ack_p50_redis_frozen_ms')} ms with Redis "
        f"frozen; {_rss_text(raptor, 'rss_', meta.get('programs'))}; "
        f"{_rss_text(raptor, 'rss_1000_', meta.get('large_programs'))}; "
        f"fleet ingest: {raptor.get('fleet_ingest_received')} of "
        f"{raptor.get('fleet_ingest_messages')} messages from {raptor.get('fleet_ingest_hosts')} hosts.",
        "",
        "How to read it: *events discarded* are counted from supervisord's own log "
        "(`event buffer overflowed, discarding event`). *Converge* figures are the time until "
        "`host_procs:<host>` equals `getAllProcessInfo()` (state and pid of every process), "
        "after the burst's last program is RUNNING, or after Redis is back; *did not converge* "
        "means not within 70 s. *Ack time* is measured inside each listener, from an event "
        "read to its OK written, over a restart of every program, once with Redis healthy and "
        "once with Redis stopped by SIGSTOP during the burst.",
        "",
        "![burst](burst.png)",
        "",
        "Re-run: `make bench` (about 35 minutes; `python -m bench.run --quick` for a smoke run). "
        "Raw numbers: `latest.json`.",
        "",
        *HOW_TO,
    ]
    path.write_text("\n".join(lines))


def _rss_text(figures: Dict[str, Any], prefix: str, programs: Any) -> str:
    """The listener's memory at one host size, in words."""
    if f"{prefix}mb" not in figures:
        return f"RSS at {programs} programs not measured"
    flapping = "rss_1000_flapping_" if prefix == "rss_1000_" else "flapping_"
    return (
        f"RSS at {programs} programs (buffer_size {figures.get(prefix + 'buffer_size')}): "
        f"{figures.get(prefix + 'start_mb')} MB once every program has started, "
        f"max {figures.get(prefix + 'max_mb')} MB, growth over the second half "
        f"{figures.get(prefix + 'growth_second_half_mb')} MB across {figures.get(flapping + 'events')} events "
        f"in {figures.get(flapping + 's')} s of flapping"
    )


def write_plot(results: Dict[str, Any], bursts: Dict[str, List[float]], path: Path) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for variant in VARIANTS:
        arrivals = sorted(t for t in bursts.get(variant, []) if t >= 0)
        if arrivals:
            left.step(arrivals, range(1, len(arrivals) + 1), where="post", label=label(variant, results["meta"]))
    left.set_title(f"`supervisorctl restart all` of {results['meta']['programs']} programs")
    left.set_xlabel("seconds since the restart began")
    left.set_ylabel("messages published (cumulative)")
    left.legend(loc="center right")
    meta = results["meta"]
    top = 0.0
    for key, programs, color in (
        ("rss_series", meta.get("programs"), "tab:blue"),
        ("rss_1000_series", meta.get("large_programs"), "tab:orange"),
    ):
        series = results["raptor"].get(key, [])
        if series:
            right.plot([t for t, _ in series], [mb for _, mb in series], color=color, label=f"{programs} programs")
            right.axhline(RSS_TARGETS[key], color=color, linestyle="--", label=f"target {RSS_TARGETS[key]:g} MB")
            top = max(top, RSS_TARGETS[key], *(mb for _, mb in series))
    if top:
        right.set_ylim(0, top * 1.2)
        right.legend(loc="lower right")
    right.set_title("raptor listener RSS while a quarter of the programs flap")
    right.set_xlabel("seconds")
    right.set_ylabel("RSS (MB)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- a comparison with a baseline (run.py --baseline) -------------------------------

# Figure, title ({programs} and {large} are the host sizes). Every one is "lower is
# better", so a ratio above 1 is the working tree doing worse than the baseline.
COMPARED = (
    ("overflow_start_200", "events discarded: start with {programs} programs"),
    ("overflow_restart_200", "events discarded: restart all of {programs}"),
    ("burst_last_message_s", "restart all: last message published (s)"),
    ("restart_all_s", "restart all: until every program runs and the snapshot is right (s)"),
    ("converge_after_burst_s", "burst end until snapshot = real state (s)"),
    ("ack_p50_ms", "ack time p50, Redis healthy (ms)"),
    ("ack_p99_ms", "ack time p99, Redis healthy (ms)"),
    ("ack_p50_redis_frozen_ms", "ack time p50, Redis frozen (ms)"),
    ("ack_p99_redis_frozen_ms", "ack time p99, Redis frozen (ms)"),
    ("converge_after_outage_s", "Redis outage mid-burst: return until snapshot correct (s)"),
    ("rss_start_mb", "listener RSS once {programs} programs run (MB)"),
    ("rss_mb", "listener RSS after flapping, {programs} programs (MB)"),
    ("rss_growth_second_half_mb", "RSS growth over the second half, {programs} programs (MB)"),
    ("rss_1000_start_mb", "listener RSS once {large} programs run (MB)"),
    ("rss_1000_mb", "listener RSS after flapping, {large} programs (MB)"),
    ("rss_1000_growth_second_half_mb", "RSS growth over the second half, {large} programs (MB)"),
)


LARGE_COLORS = {"baseline": "black", "raptor": "tab:orange"}


def _compare_cell(median: Any, runs: List[Any]) -> str:
    """The median, and the spread of the runs when there are several (noise at a glance)."""
    if median is None and any(v is not None for v in runs):
        text = "did not converge"
    elif median is None:
        text = "n/a"
    else:
        text = f"{median:g}"
    known = [v for v in runs if v is not None]
    if len(runs) > 1 and known and min(known) != max(known):
        text += f" ({min(known):g}-{max(known):g})"
    return text


def ratio(new: Any, old: Any) -> str:
    if not isinstance(new, (int, float)) or not isinstance(old, (int, float)):
        return "-"
    if old == 0:
        return "same" if new == 0 else "-"
    return f"{new / old:.2f}"


def compare_table(results: Dict[str, Any]) -> str:
    """compare.md: one row a figure, the baseline and the working tree side by side."""
    meta = results["meta"]
    base, tree = meta["baseline"], meta["working_tree"]
    dirty = " + uncommitted changes" if tree.get("dirty") else ""
    lines = [
        "# Benchmark comparison",
        "",
        f"Made by `{meta['command']}` on {meta['date']}: {meta['cpus']} x {meta['cpu']}, Python {meta['python']}, "
        f"{meta['redis']}, supervisor {meta['supervisor']}; {meta['programs']} programs, buffer_size "
        f"{meta['buffer_size']} for both; medians of {meta['runs']} runs, the two sides interleaved; "
        f"{meta['duration_s']} s in all.",
        "",
        f"Baseline: `{base['ref']}` = {base['commit'][:10]}. Working tree: {tree['commit'][:10]}{dirty}.",
        "",
        "| figure | baseline | working tree | ratio |",
        "| --- | --- | --- | --- |",
    ]
    per_run = results.get("per_run", {})
    for key, title in COMPARED:
        old, new = results["baseline"].get(key, "-"), results["raptor"].get(key, "-")
        if old == "-" and new == "-":
            continue  # not measured in this run (RSS without --with-rss)
        cells = [
            _compare_cell(results[side].get(key), [r.get(key) for r in per_run.get(side, [])])
            if key in results[side]
            else "-"
            for side in ("baseline", "raptor")
        ]
        # RSS rows: the sizes measured (--rss-programs may differ from the other scenarios').
        rss_sizes = results["raptor"].get("rss_programs"), results["raptor"].get("rss_1000_programs")
        name = title.format(programs=rss_sizes[0] if key.startswith("rss_") else meta["programs"], large=rss_sizes[1])
        lines.append(f"| {name} (`{key}`) | {cells[0]} | {cells[1]} | {ratio(new, old)} |")
    lines += [
        "",
        "Ratio: working tree / baseline; every figure is lower-is-better, so above 1 is slower "
        "(or bigger) than the baseline. In brackets: the lowest and highest run. On a shared "
        "2-core VM timings move by tens of percent between runs: a regression is a ratio "
        "well above 1 whose ranges do not overlap; counts are exact.",
        "",
        "![comparison](compare.png)",
        "",
    ]
    return "\n".join(lines)


def write_compare_plot(results: Dict[str, Any], path: Path) -> None:
    """The first burst of each side; then RSS over time if measured, else each run's ack p99."""
    meta = results["meta"]
    names = {"baseline": f"baseline {meta['baseline']['ref']}", "raptor": "working tree"}
    styles = {"baseline": {"color": "tab:gray", "linestyle": "--"}, "raptor": {"color": "tab:blue"}}
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for side in ("baseline", "raptor"):
        arrivals = sorted(t for t in results.get("bursts", {}).get(side, []) if t >= 0)
        if arrivals:
            left.step(arrivals, range(1, len(arrivals) + 1), where="post", label=names[side], **styles[side])
    left.set_title(f"`supervisorctl restart all` of {meta['programs']} programs (first run)")
    left.set_xlabel("seconds since the restart began")
    left.set_ylabel("messages published (cumulative)")
    if left.has_data():
        left.legend(loc="lower right")
    if any("rss_series" in results[side] for side in ("baseline", "raptor")):
        for side in ("baseline", "raptor"):
            for key in ("rss_series", "rss_1000_series"):
                series = results[side].get(key, [])
                programs = results[side].get(key.replace("series", "programs"))
                if series:
                    # The large host in a colour of its own: the two sizes differ by a few MB only.
                    style = {**styles[side], **({"color": LARGE_COLORS[side]} if key == "rss_1000_series" else {})}
                    right.plot(
                        [t for t, _ in series],
                        [mb for _, mb in series],
                        label=f"{names[side]}, {programs} programs",
                        **style,
                    )
        right.set_ylim(bottom=0)
        right.set_title("listener RSS while a quarter of the programs flap")
        right.set_xlabel("seconds")
        right.set_ylabel("RSS (MB)")
    else:
        for side, offset in (("baseline", -0.1), ("raptor", 0.1)):
            for key, marker in (("ack_p99_ms", "o"), ("ack_p99_redis_frozen_ms", "^")):
                values = [(i + 1 + offset, r[key]) for i, r in enumerate(results["per_run"][side]) if r.get(key)]
                if values:
                    right.scatter(
                        *zip(*values),
                        marker=marker,
                        color=styles[side]["color"],
                        label=f"{names[side]}, {'healthy' if key == 'ack_p99_ms' else 'Redis frozen'}",
                    )
        right.set_ylim(bottom=0)
        right.set_title("ack time p99 in each run")
        right.set_xticks(range(1, len(results["per_run"]["raptor"]) + 1))
        right.set_xlabel("run")
        right.set_ylabel("ms")
    if right.has_data():
        right.legend(loc="best", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Optional[List[str]] = None) -> int:
    """Redraw compare.md and compare.png from a compare.json."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "compare_json", type=Path, nargs="?", default=Path(__file__).parent / "results" / "compare.json"
    )
    args = parser.parse_args(argv)
    results = json.loads(args.compare_json.read_text())
    table = compare_table(results)
    (args.compare_json.parent / "compare.md").write_text(table)
    write_compare_plot(results, args.compare_json.parent / "compare.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
