"""Turn bench results into bench/results/README.md and burst.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

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
