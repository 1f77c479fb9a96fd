"""Issue 13, the proof: a consumer away for 60 s while 10 supervisords restart 200
programs each receives all 8,000 transitions when it is back, in order per process,
none twice, no gap; the same when Redis (persistence on) restarts while it is away."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import redis

from harness import ProgramSpec, RedisServer, Supervisords, TcpProxy, settled, velociraptor_names, wait_for
from raptor import keys
from raptor.consumer.stream import Gap, StreamReader

pytestmark = [pytest.mark.integration, pytest.mark.fleet_scale]

HOSTS, PROGRAMS, AWAY = 10, 200, 60.0
RESTART = ["STOPPING", "STOPPED", "STARTING", "RUNNING"]


def transitions_after(client: redis.Redis, entry_id: str) -> int:
    """Transitions (not resync corrections) the fleet stream holds after *entry_id*."""
    count, start = 0, f"({entry_id}"
    while True:
        batch: List[Tuple[bytes, Dict[bytes, bytes]]] = client.xrange(keys.FLEET_HISTORY, start, "+", count=5000)  # type: ignore[assignment]
        if not batch:
            return count
        count += sum(1 for _, fields in batch if fields[b"resync"] == b"0")
        start = f"({batch[-1][0].decode()}"


@pytest.mark.parametrize("redis_restarts", [False, True], ids=["redis_up", "redis_restarted"])
def test_a_consumer_away_for_a_minute_receives_every_transition(
    tmp_path: Path, start_supervisord: Supervisords, redis_restarts: bool
) -> None:
    server = RedisServer(tmp_path / "redis", extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    with server, TcpProxy(server.port) as proxy:
        admin = server.client()
        group = ProgramSpec(group="apps")  # `restart apps:*` leaves the listeners alone
        sups = [
            start_supervisord(velociraptor_names(PROGRAMS), server.url, hostname=f"host{i:02d}", program=group)
            for i in range(HOSTS)
        ]
        for sup in sups:
            settled(sup, server)

        received: List[Tuple[Dict[str, Any], str]] = []
        gaps: List[Gap] = []
        stop = threading.Event()
        reader = StreamReader(redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=5))
        thread = threading.Thread(
            target=reader.run,
            kwargs={"on_message": lambda m, i: received.append((m, i)), "on_gap": gaps.append, "stop": stop},
            daemon=True,
        )
        thread.start()
        try:
            wait_for(lambda: reader.connected, 10, "the consumer to connect")
            last: List[Tuple[bytes, Any]] = admin.xrevrange(keys.FLEET_HISTORY, count=1)  # type: ignore[assignment]
            away_from = last[0][0].decode()
            proxy.cut()
            away_since = time.monotonic()
            wait_for(lambda: not reader.connected, 10, "the consumer to notice it is cut off")

            restarts = [sup.ctl_in_background("restart", "apps:*") for sup in sups]
            for restart in restarts:
                assert restart.wait(120) == 0
            wanted = HOSTS * PROGRAMS * len(RESTART)
            wait_for(lambda: transitions_after(admin, away_from) >= wanted, 30, f"{wanted} transitions published")
            if redis_restarts:
                server.stop()
                server.start()  # same port and directory: the append-only file brings it all back
                for sup in sups:
                    settled(sup, server)
                assert transitions_after(server.client(), away_from) >= wanted, "persisted"
            # The scenario is a minute away, whatever the restarts took: not a wait for a condition.
            time.sleep(max(0.0, AWAY - (time.monotonic() - away_since)))
            proxy.start()
            wait_for(
                lambda: sum(1 for m, _ in received if not m["resync"]) >= wanted,
                30,
                f"the consumer to receive {wanted} transitions",
            )
        finally:
            stop.set()
            thread.join(10)

    assert gaps == [], [gap.describe() for gap in gaps]
    assert reader.connections >= 2, "the consumer was really cut off and came back"
    ids = [entry_id for _, entry_id in received]
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-"))) and len(set(ids)) == len(ids)
    seqs: Dict[Tuple[str, str], List[int]] = defaultdict(list)
    states: Dict[Tuple[str, str], List[str]] = defaultdict(list)
    for message, _ in received:
        seqs[(message["host"], message["run_id"])].append(message["seq"])
        if not message["resync"]:
            states[(message["host"], message["name"])].append(message["statename"])
    for (host, run_id), numbers in seqs.items():
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), f"{host} {run_id}: not each seq once"
    assert len(states) == HOSTS * PROGRAMS
    wrong = {process: seen for process, seen in states.items() if seen != RESTART}
    assert not wrong, f"{len(wrong)} processes not STOPPING, STOPPED, STARTING, RUNNING: {list(wrong.items())[:3]}"
