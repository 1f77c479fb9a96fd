"""Baseline: a listener that works the way Velociraptor's original did.

For every event, synchronously: two getAllProcessInfo() calls against the
supervisord that must serve them between dispatches, a PUBLISH and an HSET of the
whole process list. Same message format as raptor, so the benchmarks compare the
architecture, not the payload. Its ack time (event read to OK written) is measured
the same way as raptor's and kept in host_meta:<host>.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any, Dict, List

import redis
from supervisor import childutils

from raptor.keys import DEFAULT_CHANNEL, meta_key, snapshot_key
from raptor.messages import encode, state_message
from raptor.publisher.process_table import normalize_info


def main() -> None:
    host = os.environ["HOSTNAME"]
    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=30)
    rpc = childutils.getRPCInterface(os.environ)
    acks: List[float] = []
    seq = 0
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        started = time.perf_counter()
        try:
            infos: Dict[str, Any] = {}
            for _ in range(2):  # the original asked twice per event
                infos = {i["name"]: normalize_info(i) for i in rpc.supervisor.getAllProcessInfo()}
            if headers["eventname"].startswith("PROCESS_STATE_"):
                fields = dict(token.split(":", 1) for token in payload.split())
                info = infos.get(fields.get("processname", ""))
                if info is not None:
                    seq += 1
                    message = state_message(
                        host, info, event=headers["eventname"], from_state=fields.get("from_state"),
                        seq=seq, run_id="sync-baseline",
                    )  # fmt: skip
                    client.publish(DEFAULT_CHANNEL, encode(message))
                client.hset(snapshot_key(host), mapping={n: json.dumps(i) for n, i in infos.items()})
        except Exception as exc:  # keep going, as a fair baseline would
            sys.stderr.write(f"sync baseline: {exc}\n")
        childutils.listener.ok(sys.stdout)
        acks.append(time.perf_counter() - started)
        if len(acks) % 25 == 0:
            recent = sorted(acks[-4096:])
            p99 = recent[min(len(recent) - 1, int(0.99 * len(recent)))]
            with contextlib.suppress(redis.RedisError):
                client.hset(
                    meta_key(host),
                    mapping={
                        "acks": len(acks),
                        "ack_p99_ms": f"{p99 * 1000:.4f}",
                        "ack_p50_ms": f"{recent[len(recent) // 2] * 1000:.4f}",
                    },
                )


if __name__ == "__main__":
    main()
