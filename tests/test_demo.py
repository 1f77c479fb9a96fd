"""`make demo`, end to end: containers, ansible-playbook, live messages, status, raptor web."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from harness import BIN, free_port

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.integration


def get_json(url: str, authorization: Optional[str] = None) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


# The demo's own deadlines first (each of its two playbooks 600 s at most, stopped sooner
# when it prints nothing for 300 s; its waits a minute each), so an up well within
# 1,500 s; down 120 s. Not the suite's 300 s: on a loaded machine the first up takes
# minutes (Debian packages, three virtualenvs).
@pytest.mark.timeout(3200)
def test_demo_rolls_out_a_fleet_without_duplicates() -> None:
    port = free_port()
    web_port = free_port()
    while web_port == port:
        web_port = free_port()
    env: Dict[str, str] = {
        **os.environ,
        "RAPTOR_DEMO_PREFIX": "raptor-demotest",
        "RAPTOR_DEMO_REDIS_PORT": str(port),
        "RAPTOR_DEMO_WEB_PORT": str(web_port),
    }
    script = str(ROOT / "demo" / "demo.sh")
    try:
        result = subprocess.run([script, "up"], env=env, capture_output=True, text=True, timeout=1500, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        out = result.stdout
        for step in ("1/5", "2/5", "3/5 roll out: ansible-playbook playbooks/site.yml", "4/5", "5/5"):
            assert step in out
        step4 = out[out.index("4/5") : out.index("5/5")]
        live = [line for line in step4.splitlines() if "->" in line]
        # Each host's four transitions in order; the two hosts' listeners are separate
        # processes, so web1's last one may arrive after worker1's first.
        for host in ("web1", "worker1"):
            mine = [line for line in live if line.split()[1] == host]
            assert len(mine) == 4, live
            assert "STARTING -> RUNNING" in mine[3], mine
        assert len(live) == 8, live
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
        # raptor web on the Redis host, published on the loopback, with the demo's token;
        # the demo ends with its address.
        web = f"http://127.0.0.1:{web_port}/"
        assert out.rstrip().splitlines()[-1].strip() == web
        token = (ROOT / "build" / "raptor-demotest" / "web-token").read_text(encoding="utf-8").strip()
        assert len(token) >= 16
        assert token in out  # told to the user, with the URL
        with pytest.raises(urllib.error.HTTPError) as refused:
            get_json(web + "api/fleet")
        assert refused.value.code == 401
        assert refused.value.headers["WWW-Authenticate"].startswith("Basic")
        with pytest.raises(urllib.error.HTTPError) as wrong:
            get_json(web + "api/fleet", "Basic " + base64.b64encode(b"demo:not-the-token-at-all").decode())
        assert wrong.value.code == 401
        basic = "Basic " + base64.b64encode(f"anyone:{token}".encode()).decode()
        fleet = get_json(web + "api/fleet", basic)
        assert [h["host"] for h in fleet["hosts"]] == ["web1", "web2", "worker1"]
        assert get_json(web + "api/fleet", f"Bearer {token}")["duplicates"] == []

        # make demo again over the running fleet: the roll-out finds nothing to change.
        again = subprocess.run([script, "up"], env=env, capture_output=True, text=True, timeout=1500, check=False)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        rollout = again.stdout[again.stdout.index("3/5") : again.stdout.index("4/5")]
        recap = dict(re.findall(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)", rollout, re.MULTILINE))
        assert recap == {"raptor-demotest-redis": "0", "web1": "0", "web2": "0", "worker1": "0"}, rollout
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
