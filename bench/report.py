"""Turn bench results into bench/results/README.md and burst.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

VARIANTS = ("raptor", "seed_config", "sync_getallprocessinfo")
LABELS = {
    "raptor": "raptor (buffer 1024)",
    "seed_config": "raptor, seed config (buffer 10)",
    "sync_getallprocessinfo": "per-event getAllProcessInfo",
}


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
        "| figure | target | " + " | ".join(LABELS[v] for v in VARIANTS) + " |",
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
        f"frozen; RSS max {raptor.get('rss_max_mb')} MB, growth over the second half "
        f"{raptor.get('rss_growth_second_half_mb')} MB across {raptor.get('flapping_events')} events in "
        f"{raptor.get('flapping_s')} s of flapping; fleet ingest: {raptor.get('fleet_ingest_received')} of "
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
        "Re-run: `make bench` (about 20 minutes; `python -m bench.run --quick` for a smoke run). "
        "Raw numbers: `latest.json`.",
        "",
    ]
    path.write_text("\n".join(lines))


def write_plot(results: Dict[str, Any], bursts: Dict[str, List[float]], path: Path) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for variant in VARIANTS:
        arrivals = sorted(t for t in bursts.get(variant, []) if t >= 0)
        if arrivals:
            left.step(arrivals, range(1, len(arrivals) + 1), where="post", label=LABELS[variant])
    left.set_title(f"`supervisorctl restart all` of {results['meta']['programs']} programs")
    left.set_xlabel("seconds since the restart began")
    left.set_ylabel("messages published (cumulative)")
    left.legend(loc="center right")
    series = results["raptor"].get("rss_series", [])
    if series:
        right.plot([t for t, _ in series], [mb for _, mb in series], color="tab:blue")
        right.axhline(30, color="tab:red", linestyle="--", label="target 30 MB")
        right.set_ylim(0, max(35, max(mb for _, mb in series) * 1.2))
        right.legend(loc="lower right")
    right.set_title("raptor listener RSS while a quarter of the programs flap")
    right.set_xlabel("seconds")
    right.set_ylabel("RSS (MB)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
