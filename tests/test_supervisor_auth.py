"""A password-protected supervisord: resyncs authenticate, and no form of a password
ever reaches a log."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Dict
from urllib.parse import quote, quote_plus

import pytest

from harness import (
    ListenerSpec,
    RedisServer,
    RpcSpec,
    Supervisord,
    Supervisords,
    free_port,
    snapshot_differences,
    stored_snapshot,
    velociraptor_names,
    wait_for,
)
from raptor.logs import secret_forms
from raptor.publisher.supervisor_rpc import RPC_URL, SupervisorRPC, basic_auth_header

USER = "admin"
# Every character that URLs, supervisord.conf or the Basic header treat specially,
# and a %21 that a second unquote would turn into '!'.
PASSWORD = "Sup!pw@x:/$#%21%"
WRONG = "Wr0ng!@:/$#%22%"


def protected(
    start_supervisord: Supervisords, redis_url: str, password: str, programs: int = 20, http: bool = False
) -> Supervisord:
    """A started supervisord whose RPC wants USER and PASSWORD; the listener is given *password*."""
    return start_supervisord(
        velociraptor_names(programs),
        redis_url,
        rpc=RpcSpec(USER, PASSWORD, free_port() if http else None),
        # supervisord passes a listener only SUPERVISOR_SERVER_URL: the role adds these.
        listener=ListenerSpec(
            env={"SUPERVISOR_USERNAME": USER, "SUPERVISOR_PASSWORD": password, "RAPTOR_LOG_LEVEL": "DEBUG"}
        ),
    )


@pytest.mark.integration
@pytest.mark.parametrize("http", [False, True], ids=["unix", "http"])
def test_resync_authenticates_to_a_password_protected_supervisord(
    redis_server: RedisServer, start_supervisord: Supervisords, http: bool
) -> None:
    sup = protected(start_supervisord, redis_server.url, PASSWORD, http=http)
    wait_for(sup.programs_running, 60, "programs to run")
    # The password as written in supervisord.conf works for supervisorctl too...
    status = sup.ctl("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert sup.programs[0] in status.stdout
    # ... and authentication is really on.
    refused = sup.ctl("-p", WRONG, "status")
    assert refused.returncode != 0
    assert "authentication" in refused.stdout + refused.stderr

    client = redis_server.client()
    wait_for(lambda: not snapshot_differences(client, sup.hostname, sup), 5, "snapshot after start")

    # A new listener knows nothing of the running programs: only getAllProcessInfo()
    # can tell it, and only if supervisord accepts its credentials.
    client.flushall()
    old = sup.listener_pid()
    restart = sup.ctl("restart", "proc_publisher")
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert sup.listener_pid() != old
    started = time.monotonic()
    try:
        wait_for(lambda: not snapshot_differences(client, sup.hostname, sup), 2.0, "snapshot after listener restart")
    except AssertionError as exc:
        missing = [p for p in snapshot_differences(client, sup.hostname, sup) if p.startswith("missing")]
        raise AssertionError(f"{exc}; {len(missing)} of {len(sup.truth())} missing") from None
    print(f"MEASURED auth restart converge_s={time.monotonic() - started:.3f}")

    # An idle listener repairs a flushed Redis the same way (heartbeat, then resync).
    client.flushall()
    wait_for(lambda: not snapshot_differences(client, sup.hostname, sup), 2.0, "snapshot after FLUSHALL")
    assert len(stored_snapshot(client, sup.hostname)) == len(sup.programs) + 1  # and the listener itself
    log = sup.listener_log()
    # "HTTP 401", not a bare "401": a pid such as proc_publisher[4014] holds one.
    assert "HTTP 401" not in log and "refused" not in log, log[-2000:]
    # The listener really went through the transport under test.
    environ = Path(f"/proc/{sup.listener_pid()}/environ").read_bytes().split(b"\0")
    expected_url = f"http://127.0.0.1:{sup.inet_port}" if http else f"unix://{sup.socket}"
    assert f"SUPERVISOR_SERVER_URL={expected_url}".encode() in environ


def every_form(user: str, secret: str) -> Dict[str, str]:
    """Spelled out by hand, independently of raptor.logs.secret_forms."""
    basic = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return {
        "raw": secret,
        "quote": quote(secret),
        "quote safe=''": quote(secret, safe=""),
        "quote_plus": quote_plus(secret),
        "basic header": basic,
        "repr": repr(secret)[1:-1],
        "json": json.dumps(secret)[1:-1],
        "repr of repr": repr(repr(secret))[1:-1],
    }


@pytest.mark.integration
def test_wrong_password_is_one_warning_and_leaks_in_no_form(
    redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    sup = protected(start_supervisord, redis_server.url, WRONG, programs=5)
    wait_for(sup.programs_running, 60, "programs to run")
    pid = sup.listener_pid()
    wait_for(lambda: "HTTP 401" in sup.listener_log(), 10, "the refused credentials to be logged")
    # The listener retries every 2 s (a DEBUG line per resync): let it fail a few times.
    wait_for(lambda: sup.listener_log().count("resync (") >= 3, 15, "three resyncs without supervisord's answer")

    log = sup.listener_log()
    logs = {"listener": log, "supervisord": sup.log_text()}
    for secret in (WRONG, PASSWORD):
        for form_name, form in every_form(USER, secret).items():
            for where, text in logs.items():
                assert form not in text, f"the {form_name} form of a password is in the {where} log"
        for where, text in logs.items():
            assert not [form for form in secret_forms(secret, USER) if form in text], where

    warnings = [line for line in log.splitlines() if "getAllProcessInfo()" in line]
    assert len(warnings) == 1, warnings
    assert "refused SUPERVISOR_USERNAME 'admin' and its SUPERVISOR_PASSWORD (HTTP 401)" in warnings[0]
    assert sup.listener_pid() == pid, "the listener restarted"
    # Events still flow without supervisord's answers.
    wait_for(lambda: len(stored_snapshot(redis_server.client(), sup.hostname)) >= len(sup.programs), 5, "snapshot")


def test_rpc_url_carries_no_credentials() -> None:
    """The header is built from the stored credentials; the URL has none to show."""
    rpc = SupervisorRPC(f"http://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:9001", "", "")
    assert rpc.server_url == "http://127.0.0.1:9001"
    assert "@" not in RPC_URL
    header = basic_auth_header(USER, PASSWORD)
    assert base64.b64decode(header.split()[1]).decode().split(":", 1) == [USER, PASSWORD]
    assert rpc._authorization == header
