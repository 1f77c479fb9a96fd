"""The README's screenshots of raptor web, from real parts: a redis-server, four supervisords
with their listeners, the server, Debian's Chromium.

    .venv/bin/python scripts/screenshots.py [--out docs]      # make screenshots

The fleet: web1 and web2 (node_example programs, one restarted twice on web1), worker1
(a program that exits at once and ends FATAL), and one supervisord published under two
names (db1, db1.internal: DUPLICATE). Writes web-fleet.png, web-host.png, web-process.png.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import ListenerSpec, ProgramSpec, RedisServer, Supervisords, velociraptor_names, wait_for  # noqa: E402
from harness.web import WebServer  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def main(argv: Optional[List[str]] = None) -> int:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 (the browser extra)

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir, RedisServer(Path(workdir) / "redis") as redis_server:
        sups = Supervisords(Path(workdir))
        try:
            web_programs = velociraptor_names(6)
            web1 = sups(web_programs, redis_server.url, hostname="web1")
            sups(velociraptor_names(4, app="billing"), redis_server.url, hostname="web2")
            crash = ProgramSpec(commands={"reports-v2-prod-0c1d2e3f-cron-6000": "sh -c 'exit 3'"},
                                options={"startretries": "1"})  # fmt: skip
            worker1 = sups(["queue-v2-prod-0c1d2e3f-worker-6001", "reports-v2-prod-0c1d2e3f-cron-6000"],
                           redis_server.url, hostname="worker1", program=crash)  # fmt: skip
            sups(["postgres-v1-prod-aa11bb22-db-5432"], redis_server.url,
                 listener=ListenerSpec(hosts={"proc_publisher": "db1", "second": "db1.internal"}))  # fmt: skip
            wait_for(web1.programs_running, 30, "web1's programs to run")
            for _ in range(2):
                web1.ctl("restart", web_programs[1])
            states = lambda: {info["statename"] for info in worker1.truth().values()}  # noqa: E731
            wait_for(lambda: "FATAL" in states(), 30, "worker1's program to end FATAL")
            with WebServer(Path(workdir) / "web", redis_server.url) as web, sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS, timeout=60_000)
                page = browser.new_page(viewport={"width": 1400, "height": 460})
                views = {  # file: (query, what the view has drawn when it is ready)
                    "web-fleet.png": ("", "#spacer .row"),
                    "web-host.png": ("?view=host&host=web1", "#spacer .row"),
                    "web-process.png": (f"?view=process&host=web1&process={web_programs[1]}", "table.transitions td"),
                }
                for name, (query, drawn) in views.items():
                    page.goto(web.url + query)
                    page.wait_for_selector(f"body[data-ready='1'] {drawn}", timeout=30_000)
                    page.screenshot(path=str(args.out / name))
                    print(args.out / name)
                browser.close()
        finally:
            sups.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
