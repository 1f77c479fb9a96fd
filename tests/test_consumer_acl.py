"""The consumers (status, tail, history, raptor web) work as the read-only Redis user the README gives."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from harness import RedisServer, Supervisords, settled, velociraptor_names, wait_for
from harness.web import WebServer, entries, read_events
from raptor import keys
from raptor.consumer import cli

pytestmark = pytest.mark.integration

READER_ACL = (
    "~host_procs:* ~host_meta:* ~host_history:* ~proc_history resetchannels +hgetall +scan +ttl +exists "
    "+xread +xrange +xinfo +multi +exec +time +ping"
)
README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_gives_this_acl() -> None:
    assert f"ACL SETUSER raptor_reader reset on >CHANGE-ME {READER_ACL}\n" in README.read_text(encoding="utf-8")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_status_tail_and_history_as_a_read_only_user(
    redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    names = velociraptor_names(3)
    sup = start_supervisord(names, redis_server.url)
    admin = settled(sup, redis_server)
    assert sup.ctl("restart", names[0]).returncode == 0
    wait_for(lambda: admin.xlen(keys.history_key(sup.hostname)) >= 4, 10, "the restart in the history")
    admin.execute_command("ACL", "SETUSER", "raptor_reader", "reset", "on", ">reader-pw", *READER_ACL.split())
    url = f"redis://raptor_reader:reader-pw@127.0.0.1:{redis_server.port}/0"

    code, out, err = run("status", "--json", "--redis-url", url)
    assert code == 0, err
    assert [host["host"] for host in json.loads(out)["hosts"]] == [sup.hostname]

    code, out, err = run("history", sup.hostname, names[0], "--json", "--redis-url", url)
    assert code == 0, err
    assert json.loads(out)["processes"][0]["restarts"] == 1

    code, out, err = run("tail", "--since", "0-0", "--host", sup.hostname, "--count", "3", "--redis-url", url)
    assert code == 0, err
    assert len(out.splitlines()) == 3 and "NOPERM" not in err


def test_raptor_web_as_a_read_only_user(
    tmp_path: Path, redis_server: RedisServer, start_supervisord: Supervisords
) -> None:
    names = velociraptor_names(2)
    sup = start_supervisord(names, redis_server.url)
    admin = settled(sup, redis_server)
    admin.execute_command("ACL", "SETUSER", "raptor_reader", "reset", "on", ">reader-pw", *READER_ACL.split())
    url = f"redis://raptor_reader:reader-pw@127.0.0.1:{redis_server.port}/0"
    with WebServer(tmp_path / "web", url) as web:
        assert web.get("healthz")[0] == 200
        fleet = web.json("api/fleet")
        assert [host["host"] for host in fleet["hosts"]] == [sup.hostname]
        assert sup.ctl("restart", names[0]).returncode == 0
        got = entries(read_events(web, fleet["position"], lambda got: len(entries(got)) >= 4, 20))
        assert [(m["name"], m["statename"]) for m in got] == [
            (names[0], state) for state in ("STOPPING", "STOPPED", "STARTING", "RUNNING")
        ]
        history = web.json(f"api/history?host={sup.hostname}&program={names[0]}")
        assert history["processes"][0]["restarts"] == 1
        assert "NOPERM" not in web.log_text()
