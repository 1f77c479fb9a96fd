"""Whatever it is given (a password, a bad configuration, garbage on stdin), the
listener leaks no secret and keeps stdout for the protocol."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict

import pytest

from harness import (
    BIN,
    RedisServer,
    Supervisords,
    snapshot_differences,
    stored_snapshot,
    velociraptor_names,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_password_never_reaches_a_log(tmp_path: Path, start_supervisord: Supervisords) -> None:
    password = "s3cr3t-pa55word"
    with RedisServer(tmp_path / "redis", password=password) as redis_server:
        sup = start_supervisord(velociraptor_names(5), redis_server.url)
        wait_for(sup.programs_running, 30, "programs to run")
        client = redis_server.client()
        wait_for(lambda: not snapshot_differences(client, "testhost", sup), 5, "snapshot with auth")
        # Make every reconnect fail on authentication, then on connection.
        client.config_set("requirepass", "another-one")
        client.client_kill_filter(_type="normal", skipme=True)
        sup.ctl("restart", sup.programs[0])
        wait_for(lambda: "unavailable" in sup.listener_log(), 10, "the auth failure to be logged")
        redis_server.stop(kill=True)
        sup.ctl("restart", sup.programs[1])
        logs = sup.listener_log() + sup.log_text()
        assert "***" in logs, "the URL is logged redacted"
        assert password not in logs
        assert "another-one" not in logs


def run_publisher(env: Dict[str, str], stdin: str = "", timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "proc_publisher")],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", **env},
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SUPERVISOR_ENABLED": "1"}, "REDIS_URL"),
        ({"SUPERVISOR_ENABLED": "1", "REDIS_URL": "http://user:hunter2@h:6379"}, "REDIS_URL"),
        ({"SUPERVISOR_ENABLED": "1", "REDIS_URL": "redis://:hunter2@host:notaport/0"}, "REDIS_URL"),
        ({"SUPERVISOR_ENABLED": "1", "REDIS_URL": "redis://:hunter2@host:6379/zero"}, "REDIS_URL"),
        ({"SUPERVISOR_ENABLED": "1", "REDIS_URL": "redis://:hunter2@/0"}, "REDIS_URL"),
        ({"SUPERVISOR_ENABLED": "1", "REDIS_URL": "rediss://:hunter2@h:6379/0?ssl_cert_reqs=maybe"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://:hunter2@127.0.0.1:6379/0"}, "SUPERVISOR_ENABLED"),
        ({"SUPERVISOR_ENABLED": "1", "REDIS_URL": "redis://h:1/0", "RAPTOR_SNAPSHOT_TTL": "10"}, "RAPTOR_SNAPSHOT_TTL"),
    ],
)
def test_bad_configuration_is_one_clear_line(env: Dict[str, str], variable: str) -> None:
    result = run_publisher(env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"proc_publisher: {variable} ")
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == "", "nothing but protocol tokens on stdout"


def test_stdout_carries_only_protocol_tokens_whatever_the_input(redis_server: RedisServer) -> None:
    payload = "processname:café-v1-x-h-wëb-1 groupname:café-v1-x-h-wëb-1 from_state:STARTING pid:42"
    events = [
        f"ver:3.0 server:supervisor serial:1 pool:p poolserial:1 eventname:PROCESS_STATE_RUNNING len:{len(payload)}\n"
        + payload,
        "this is not a header\n",
        "ver:3.0 eventname:PROCESS_STATE_RUNNING len:9\nnot:valid",
        "ver:3.0 eventname:SOMETHING_NEW len:3\nabc",
        "ver:3.0 eventname:TICK_60 len:15\nwhen:1700000000",
    ]
    env = {"SUPERVISOR_ENABLED": "1", "REDIS_URL": redis_server.url, "HOSTNAME": "h1"}
    result = run_publisher(env, stdin="".join(events))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "READY\n" + "RESULT 2\nOKREADY\n" * len(events)
    stored = wait_for(lambda: stored_snapshot(redis_server.client(), "h1"), 5, "the snapshot")
    assert stored["café-v1-x-h-wëb-1"]["pid"] == 42
