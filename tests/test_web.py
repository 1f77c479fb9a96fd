"""raptor web over HTTP, against real supervisords, a real Redis and the real server process:
the JSON API's shapes, the event stream's resumption, auth and the page's policy."""

from __future__ import annotations

import base64
import http.client
import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

import pytest

from harness import BIN, RedisServer, Supervisord, Supervisords, snapshot_differences, wait_for
from harness.web import Event, WebServer, entries, read_events
from raptor.keys import FLEET_HISTORY

pytestmark = pytest.mark.integration
HOST = "web1"
PROGRAMS = ["app-v1-prod-abcd1234-web-5000", "app-v1-prod-abcd1234-web-5001", "worker"]
TOKEN = "t0ken-for-the-tests-0123456789"


def raptor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "raptor"), *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def fleet(redis_server: RedisServer, start_supervisord: Supervisords) -> Supervisord:
    sup = start_supervisord(PROGRAMS, redis_server.url, hostname=HOST)
    wait_for(sup.programs_running, 30, "programs to run")
    client = redis_server.client()
    wait_for(lambda: not snapshot_differences(client, HOST, sup), 10, "the snapshot")
    return sup


@pytest.fixture
def web(tmp_path: Path, redis_server: RedisServer) -> Any:
    with WebServer(tmp_path / "web", redis_server.url) as server:
        yield server


def without_ages(report: Dict[str, Any]) -> Dict[str, Any]:
    """What does not move between two reads: a resync may refresh the snapshot between them."""
    for host in report["hosts"]:
        for moving in ("age_s", "refreshed", "seq"):
            host.pop(moving)
        host["listener"] = sorted(host["listener"])  # counters move on; which there are does not
        for proc in host["procs"]:
            proc.pop("description")  # "uptime 0:00:01"
            proc.pop("start")  # an event's second until a resync sets supervisord's
    return report


def test_fleet_api_is_status_json_plus_a_position(
    fleet: Supervisord, web: WebServer, redis_server: RedisServer
) -> None:
    api = web.json("api/fleet")
    status = json.loads(raptor("status", "--json", "--redis-url", redis_server.url).stdout)
    position, server_time, stale_after = api.pop("position"), api.pop("server_time"), api.pop("stale_after")
    assert without_ages(api) == without_ages(status)
    assert re.fullmatch(r"\d+-\d+", position)
    assert server_time > 0 and stale_after == 120
    (host,) = api["hosts"]
    assert {p["name"] for p in host["procs"]} == {*PROGRAMS, "proc_publisher"}
    assert {"ack_p99_ms", "discarded_by_supervisord", "coalesced"} <= set(host["listener"])


def test_host_and_history_apis_match_the_cli(fleet: Supervisord, web: WebServer, redis_server: RedisServer) -> None:
    host = web.json(f"api/hosts/{HOST}")
    assert [h["host"] for h in host["hosts"]] == [HOST]
    assert web.get("api/hosts/nobody")[0] == 404
    fleet.ctl("restart", "worker")
    api = web.json(f"api/history?host={HOST}&program=worker&since=1h")
    cli_args = ["history", HOST, "worker", "--since", "1h", "--json", "--redis-url", redis_server.url]
    cli = json.loads(raptor(*cli_args).stdout)
    for report in (api, cli):  # what depends on when it was asked
        report.pop("since"), report.pop("until")
        for process in report["processes"]:
            process.pop("not_running_s")
    assert api == cli
    assert [t["to_state"] for t in api["transitions"]][-4:] == ["STOPPING", "STOPPED", "STARTING", "RUNNING"]
    assert web.get(f"api/history?host={HOST}&since=yesterday")[0] == 400
    assert web.get("api/history?host=nobody")[0] == 404


def test_events_resume_after_the_last_event_id_without_loss_or_repeat(
    fleet: Supervisord, web: WebServer, redis_server: RedisServer
) -> None:
    position = web.json("api/fleet")["position"]
    fleet.ctl("restart", "worker")
    first = read_events(web, position, lambda got: len(entries(got)) >= 4, 20)
    last_id = [e for e in first if e.event == "entries"][-1].id
    assert last_id is not None
    fleet.ctl("restart", PROGRAMS[0])  # while no page is connected
    # A reconnecting EventSource sends Last-Event-ID, which wins over the URL's after=.
    second = read_events(web, position, lambda got: len(entries(got)) >= 4, 20, last_event_id=last_id)
    got = entries(first) + entries(second)
    stream = redis_server.client().xrange(FLEET_HISTORY, "(" + position, "+")
    assert [m["entry_id"] for m in got] == [i.decode() for i, _ in stream]
    assert [(m["name"], m["statename"]) for m in got] == [
        (name, state) for name in ("worker", PROGRAMS[0]) for state in ("STOPPING", "STOPPED", "STARTING", "RUNNING")
    ]


def test_a_restarted_server_catches_a_page_up_from_redis(
    fleet: Supervisord, tmp_path: Path, redis_server: RedisServer
) -> None:
    with WebServer(tmp_path / "web", redis_server.url) as web:
        position = web.json("api/fleet")["position"]
        web.stop()
        fleet.ctl("restart", "worker")  # published while no server runs
        web.start()  # its own reader starts at the stream's end, past these
        got = entries(read_events(web, position, lambda got: len(entries(got)) >= 4, 20))
    assert [(m["name"], m["statename"]) for m in got] == [
        ("worker", s) for s in ("STOPPING", "STOPPED", "STARTING", "RUNNING")
    ]


def reset_of(events: List[Event]) -> List[Event]:
    return [e for e in events if e.event == "reset"]


def test_a_page_behind_what_retention_kept_is_told_to_reload(
    fleet: Supervisord, web: WebServer, redis_server: RedisServer
) -> None:
    position = web.json("api/fleet")["position"]
    web.stop()
    fleet.ctl("restart", "worker")
    redis_server.client().xtrim(FLEET_HISTORY, maxlen=1, approximate=False)
    web.start()
    events = read_events(web, position, lambda got: bool(reset_of(got)), 20)
    assert "trimmed by retention" in reset_of(events)[0].json()["why"]
    assert not entries(events)


def test_a_page_from_before_redis_restarted_empty_is_told_to_reload(
    fleet: Supervisord, web: WebServer, redis_server: RedisServer
) -> None:
    fleet.ctl("restart", "worker")
    position = web.json("api/fleet")["position"]
    redis_server.stop()
    redis_server.start()  # empty: the harness' Redis keeps nothing
    events = read_events(web, position, lambda got: bool(reset_of(got)), 30)
    assert reset_of(events)


def test_every_response_carries_the_policy_and_the_page_has_no_inline_code(web: WebServer) -> None:
    for path in ("", "api/fleet", "static/app.js", "api/hosts/nobody"):
        request = web.request(path)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                headers = response.headers
        except urllib.error.HTTPError as error:
            headers = error.headers
        policy = headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, path
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
    status, page = web.get("")
    html = page.decode()
    assert status == 200
    assert re.findall(r"<script[^>]*>", html) == ['<script src="static/app.js" defer>']
    assert "<style" not in html and not re.search(r"\son[a-z]+=", html) and "style=" not in html
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere


def test_a_root_path_is_served_with_or_without_the_prefix_and_the_bare_prefix_redirects(
    fleet: Supervisord, tmp_path: Path, redis_server: RedisServer
) -> None:
    with WebServer(tmp_path / "web", redis_server.url, args=["--root-path", "/raptor"]) as web:
        # A proxy that forwards the path as it came, and one that strips the prefix.
        for path in ("raptor/api/fleet", "api/fleet"):
            assert [h["host"] for h in web.json(path)["hosts"]] == [HOST], path
        assert web.get("raptor/static/app.js")[0] == 200
        connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
        connection.request("GET", "/raptor?view=host&host=x")
        answer = connection.getresponse()
        assert (answer.status, answer.getheader("Location")) == (308, "/raptor/?view=host&host=x")
        connection.close()
        # No slash redirect, whose absolute Location would leave the proxy's prefix out.
        assert web.get("raptor/api/fleet/")[0] == 404
        assert web.get("api/events?after=1-2%0A")[0] == 400  # an id is the whole string, ASCII digits


@pytest.mark.parametrize("prefix", ["//evil.example", "/raptor/", "raptor", "/r\u00e4ptor", "/a b"])
def test_a_root_path_that_is_not_a_plain_path_does_not_start(redis_server: RedisServer, prefix: str) -> None:
    result = raptor("web", "--redis-url", redis_server.url, "--root-path", prefix, "--port", "1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "raptor web: --root-path must be a path like /raptor or /ops/raptor (letters, digits, ._~-)"
    ]


def test_a_token_is_required_when_set_and_never_logged(tmp_path: Path, redis_server: RedisServer) -> None:
    with WebServer(tmp_path / "web", redis_server.url, env={"RAPTOR_WEB_TOKEN": TOKEN}) as web:
        assert web.get("api/fleet")[0] == 401
        assert web.get("")[0] == 401
        assert web.get("api/fleet", {"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
        assert web.get("api/fleet", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        basic = base64.b64encode(f"ops:{TOKEN}".encode()).decode()
        assert web.get("", {"Authorization": f"Basic {basic}"})[0] == 200
        status, body = web.get("api/events?after=0-0")
        assert status == 401 and b"authentication required" in body
        log = web.log_text()
    assert "a token is required" in log
    assert TOKEN not in log and base64.b64encode(TOKEN.encode()).decode()[:20] not in log


def test_a_non_loopback_bind_without_a_token_does_not_start(redis_server: RedisServer) -> None:
    result = raptor("web", "--redis-url", redis_server.url, "--bind", "0.0.0.0", "--port", "1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "raptor web: --bind 0.0.0.0 is not a loopback address: set RAPTOR_WEB_TOKEN or --token-file FILE "
        "to require a token, or pass --no-auth to serve without one"
    ]


def test_redis_away_is_a_clear_503_and_the_server_lives_on(tmp_path: Path, redis_server: RedisServer) -> None:
    password = "hunter2-redis-password"
    with (
        RedisServer(tmp_path / "redis2", password=password) as private,
        WebServer(tmp_path / "web", private.url) as web,
    ):
        private.stop()
        status, body = web.get("api/fleet")
        assert status == 503
        assert b"unreachable" in body and password.encode() not in body
        assert web.get("healthz")[0] == 503
        private.start()
        wait_for(lambda: web.get("api/fleet")[0] == 200, 20, "the API to answer again")
        assert password not in web.log_text()


def test_the_process_pages_time_not_running_is_the_clis_and_not_the_time_before_it_existed(
    fleet: Supervisord, web: WebServer, redis_server: RedisServer
) -> None:
    """Issue 25, finding 3: the process page's figure (/api/history) is raptor history's,
    one definition: for a program RUNNING since it appeared, its STARTING second(s), not
    the 24 hours before it existed."""
    api = web.json(f"api/history?host={HOST}&program=worker")
    cli = json.loads(raptor("history", HOST, "worker", "--json", "--redis-url", redis_server.url).stdout)
    (from_api,), (from_cli,) = api["processes"], cli["processes"]
    assert from_api["state"] == from_cli["state"] == "RUNNING"
    assert from_api["not_running_s"] == from_cli["not_running_s"] <= 2.0, (from_api, from_cli)
