"""`make demo`, end to end: containers, ansible-playbook, live messages, status."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness import BIN, free_port

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.integration


def test_demo_rolls_out_a_fleet_without_duplicates() -> None:
    port = free_port()
    env = {**os.environ, "RAPTOR_DEMO_PREFIX": "raptor-demotest", "RAPTOR_DEMO_REDIS_PORT": str(port)}
    script = str(ROOT / "demo" / "demo.sh")
    try:
        result = subprocess.run([script, "up"], env=env, capture_output=True, text=True, timeout=1200, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        out = result.stdout
        for step in ("1/5", "2/5", "3/5 roll out: ansible-playbook playbooks/site.yml", "4/5", "5/5"):
            assert step in out
        step4 = out[out.index("4/5") : out.index("5/5")]
        live = [line for line in step4.splitlines() if "->" in line]
        assert [line.split()[1] for line in live] == ["web1"] * 4 + ["worker1"] * 4
        assert "STARTING -> RUNNING" in live[3]
        assert "no duplicate hosts" in out
        assert "node_example-v1-local-f96054b7-web-5000" in out[out.index("raptor history") :]
        status = subprocess.run(
            [str(BIN / "raptor"), "status", "--json", "--redis-url", f"redis://:demo-pass@127.0.0.1:{port}/0"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert [h["host"] for h in report["hosts"]] == ["web1", "web2", "worker1"]
        assert report["duplicates"] == []
        assert all(h["counts"] == {"RUNNING": 4} for h in report["hosts"])
    finally:
        down = subprocess.run([script, "down"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert down.returncode == 0
    left = subprocess.run(
        ["podman", "ps", "-a", "--filter", "name=raptor-demotest", "--format", "{{.Names}}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert left.stdout.strip() == ""
