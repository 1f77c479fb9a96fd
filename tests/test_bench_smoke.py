"""The benchmark scripts still run (figures are checked by make bench, not here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.integration


def test_quick_bench_writes_every_figure(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--runs", "1", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    for key in (
        "overflow_start_200",
        "overflow_restart_200",
        "converge_after_burst_s",
        "ack_p99_ms",
        "ack_p99_redis_frozen_ms",
        "converge_after_outage_s",
        "rss_mb",
        "fleet_ingest_msgs_per_s",
    ):
        assert key in results["raptor"], key
    assert {"seed_config", "sync_getallprocessinfo", "vr_agent_2_0_0", "meta"} <= results.keys()
    assert (tmp_path / "burst.png").stat().st_size > 10_000
    assert "| figure | target |" in (tmp_path / "README.md").read_text()


def run_bench(module: str, out: Path, *args: str, timeout: float = 300) -> Dict[str, Any]:
    """``python -m bench.MODULE ARGS --out OUT``, which must succeed; its JSON results."""
    command = [sys.executable, "-m", f"bench.{module}", *args, "--out", str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found: Dict[str, Any] = json.loads((out / f"{module}.json").read_text())
    return found


@pytest.mark.browser
def test_web_bench_writes_every_figure(tmp_path: Path) -> None:
    args = ("--hosts", "20", "--programs", "5", "--rate", "100", "--seconds", "3", "--followers", "3")
    figures = run_bench("web", tmp_path, *args, timeout=600)["figures"]
    assert figures["entries_on_page"] == figures["entries_written"] == 300
    assert figures["followers_all_complete"] is True
    for key in ("first_render_median_s", "latency_p99_ms", "followers_latency_p99_ms", "followers_server_rss_mb_max"):
        assert key in figures, key
    assert (tmp_path / "web.png").stat().st_size > 10_000
    assert "| figure | value | target |" in (tmp_path / "web.md").read_text()


def test_sse_servers_bench_measures_both_stacks(tmp_path: Path) -> None:
    summary = run_bench("sse_servers", tmp_path, "--clients", "3", "--seconds", "2", "--runs", "1")["summary"]
    assert set(summary) == {"starlette+uvicorn+sse-starlette", "aiohttp"}
    for row in summary.values():
        assert row["fewest_entries"] > 0  # every client got events from both stacks


def test_alert_bench_tells_every_fatal_once(tmp_path: Path) -> None:
    figures = run_bench("alert", tmp_path, "--rate", "200", "--fatal-rate", "10", "--seconds", "2")["figures"]
    assert figures["fatals"] == 20 and figures["told_once"] is True
    assert "| event to notice received, p99 (ms) |" in (tmp_path / "alert.md").read_text()
    assert (tmp_path / "alert.png").stat().st_size > 10_000
