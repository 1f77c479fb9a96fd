"""raptor web in a real browser: Debian's Chromium, driven headless by Playwright, reading a
real server that reads a real Redis fed by real supervisords."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from harness import ListenerSpec, RedisServer, Supervisord, Supervisords, snapshot_differences, wait_for
from harness.web import Nginx, WebServer
from raptor.keys import FLEET_HISTORY

playwright = pytest.importorskip("playwright.sync_api", reason="the browser extra (make installs it)")
pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium as root, headless, reaching for nothing beyond this machine.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE_HOST = "<img/src/onerror=alert(2)>"  # the listener refuses white space in HOSTNAME
HOSTILE_PROGRAM = "<img\tsrc=x\tonerror=alert(1)>"  # supervisord refuses spaces, not tabs


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS, timeout=60_000)
        yield launched
        launched.close()


class Page:
    """A tab on the dashboard; every dialog (an alert() from injected markup) and script error is kept."""

    def __init__(self, browser: Any, url: str) -> None:
        self.page = browser.new_page(viewport={"width": 1500, "height": 800})
        self.dialogs: List[str] = []
        self.errors: List[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready='1']", timeout=20_000)

    def rows(self) -> List[List[str]]:
        """The list's rows in sight, cell by cell, as the page shows them."""
        found: List[List[str]] = self.page.eval_on_selector_all(
            "#spacer .row:not([hidden])", "rows => rows.map(r => [...r.children].map(c => c.textContent))"
        )
        return found

    def wait_rows(self, condition: Any, what: str, timeout: float = 30) -> List[List[str]]:
        def matching() -> List[List[str]]:
            rows = self.rows()
            return rows if condition(rows) else []

        found: List[List[str]] = wait_for(matching, timeout, what)
        return found

    def misaligned(self) -> List[str]:
        """The head's columns whose edges are not those of the first row's cells below them."""
        found: List[str] = self.page.evaluate(
            """() => {
                const head = [...document.querySelectorAll('#head > span')];
                const row = document.querySelector('#spacer .row:not([hidden])');
                return head.filter((h, i) => {
                    const a = h.getBoundingClientRect(), b = row.children[i].getBoundingClientRect();
                    return Math.abs(a.left - b.left) > 1 || Math.abs(a.right - b.right) > 1;
                }).map((h) => h.textContent);
            }"""
        )
        return found

    def stats(self) -> Dict[str, Any]:
        found: Dict[str, Any] = self.page.evaluate("() => window.raptorStats")
        return found

    def close(self) -> None:
        self.page.close()


def pids_shown(rows: List[List[str]]) -> Dict[str, Any]:
    """The host page's rows: process -> (state, pid)."""
    return {row[0]: (row[1], int(row[2]) if row[2] else 0) for row in rows}


def pids_true(sup: Supervisord) -> Dict[str, Any]:
    return {name: (info["statename"], info["pid"]) for name, info in sup.truth().items()}


def test_the_fleet_page_shows_a_supervisords_programs_live_and_names_as_text(
    browser: Any, tmp_path: Path, redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    programs = ["app-v1-prod-abcd1234-web-5000", "worker", HOSTILE_PROGRAM]
    sup = start_supervisord(programs, redis_server.url, hostname=HOSTILE_HOST)
    wait_for(sup.programs_running, 30, "programs to run")
    with WebServer(tmp_path / "web", redis_server.url) as web:
        page = Page(browser, web.url)
        rows = page.wait_rows(lambda rows: rows and rows[0][1] == "4", "the host's row with its 4 processes")
        assert rows[0][0] == HOSTILE_HOST and rows[0][2] == "4"  # RUNNING
        assert page.misaligned() == []  # each count under its state's title
        page.page.click("#spacer a")  # the host's page
        page.wait_rows(lambda rows: pids_shown(rows) == pids_true(sup), "the host page to show supervisord's truth")
        assert page.misaligned() == []
        text = page.page.inner_text("#spacer")
        assert HOSTILE_PROGRAM.replace("\t", " ") in text.replace("\t", " ")
        before = pids_true(sup)["worker"][1]
        sup.ctl("restart", "worker")
        rows = page.wait_rows(
            lambda rows: (
                pids_shown(rows).get("worker", ("", before))[1] not in (before, 0)
                and pids_shown(rows) == pids_true(sup)
            ),
            "the restart to show live with the new pid",
        )
        page.page.screenshot(path=str(tmp_path / "host.png"))
        # The names were text, never markup: no image element, no alert() ran.
        assert page.page.eval_on_selector_all("img", "nodes => nodes.length") == 0
        assert page.dialogs == [] and page.errors == []
        assert page.stats()["resets"] == 0
        page.close()


def test_a_silent_host_turns_stale_and_one_supervisord_under_two_names_shows_duplicate(
    browser: Any, tmp_path: Path, redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    tick5 = "PROCESS_STATE,PROCESS_GROUP,TICK_5"  # snapshots refreshed every 5 s
    twice = start_supervisord(
        ["a"],
        redis_server.url,
        listener=ListenerSpec(events=tick5, hosts={"proc_publisher": "dup-a", "second": "dup-b"}),
    )
    quiet = start_supervisord(["b"], redis_server.url, hostname="quiet", listener=ListenerSpec(events=tick5))
    for sup in (twice, quiet):
        wait_for(sup.programs_running, 30, "programs to run")
    with WebServer(tmp_path / "web", redis_server.url, args=["--stale-after", "20"]) as web:
        page = Page(browser, web.url)
        rows = page.wait_rows(lambda rows: len(rows) == 3, "three hosts")
        status = {row[0]: row[12] for row in rows}
        assert status == {"dup-a": "DUPLICATE-OF dup-b", "dup-b": "DUPLICATE-OF dup-a", "quiet": "ok"}
        quiet.ctl("stop", "proc_publisher")
        # Stale after 12 s without a refresh; the page learns the ages from its poll (15 s).
        rows = page.wait_rows(lambda rows: {r[0]: r[12] for r in rows}["quiet"] == "STALE", "quiet to turn STALE", 60)
        status = {row[0]: row[12] for row in rows}
        assert status["dup-a"] == "DUPLICATE-OF dup-b"  # refreshed every 5 s: not stale
        page.page.screenshot(path=str(tmp_path / "fleet.png"))
        assert page.errors == []
        page.close()


def test_no_transition_is_lost_across_a_server_restart_and_a_redis_restart(
    browser: Any, tmp_path: Path, start_supervisord: Supervisords
) -> None:
    server = RedisServer(tmp_path / "redis", extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    with server:
        programs = [f"p{i}" for i in range(10)]
        sup = start_supervisord(programs, server.url, hostname="h1")
        wait_for(sup.programs_running, 30, "programs to run")
        client = server.client()
        wait_for(lambda: not snapshot_differences(client, "h1", sup), 10, "the snapshot")
        with WebServer(tmp_path / "web", server.url) as web:
            page = Page(browser, web.url + "?view=host&host=h1")
            first = page.stats()["loadedFrom"]  # what the page follows on from

            web.stop()  # the page's EventSource reconnects on its own, with Last-Event-ID
            sup.ctl("restart", "p1", "p2")
            web.start()
            page.wait_rows(
                lambda rows: pids_shown(rows) == pids_true(sup), "the page to catch up after the server restart"
            )

            server.stop()
            sup.ctl("restart", "p3", "p4")  # queued by the listeners while Redis is away
            server.start()  # appendonly: the stream and the snapshots come back
            page.wait_rows(
                lambda rows: pids_shown(rows) == pids_true(sup), "the page to catch up after Redis restarted", 60
            )
            sup.ctl("restart", "p5")
            page.wait_rows(lambda rows: pids_shown(rows) == pids_true(sup), "the page to follow on")
            ids = page.stats()["ids"]
        stream = [i.decode() for i, _ in client.xrange(FLEET_HISTORY, "(" + first, "+")]
        assert ids == stream  # every entry once, in order: nothing lost, nothing twice
        assert len(stream) >= 20
        assert page.stats()["resets"] == 0
        page.close()


@pytest.mark.parametrize("strip", [True, False], ids=["proxy-strips-prefix", "proxy-keeps-prefix"])
def test_the_page_works_behind_nginx_under_a_path_prefix(
    browser: Any, tmp_path: Path, redis_server: RedisServer, start_supervisord: Supervisords, strip: bool
) -> None:
    sup = start_supervisord(["worker"], redis_server.url, hostname="h1")
    wait_for(sup.programs_running, 30, "programs to run")
    args = [] if strip else ["--root-path", "/raptor"]  # a stripping proxy needs nothing
    with (
        WebServer(tmp_path / "web", redis_server.url, args=args) as web,
        Nginx(tmp_path / "nginx", web.port, "/raptor", strip=strip) as proxy,
    ):
        page = Page(browser, proxy.url + "?view=host&host=h1")
        page.wait_rows(lambda rows: pids_shown(rows) == pids_true(sup), "the host page through nginx")
        sup.ctl("restart", "worker")  # live, through the proxy's unbuffered event stream
        page.wait_rows(lambda rows: pids_shown(rows) == pids_true(sup), "the restart through nginx")
        assert page.stats()["applied"] >= 4
        page.page.click("#home")  # the fleet page: a relative link, still under the prefix
        page.wait_rows(lambda rows: [row[0] for row in rows] == ["h1"], "the fleet page through nginx")
        assert page.page.url.startswith(proxy.url)
        assert page.errors == []
        page.close()
