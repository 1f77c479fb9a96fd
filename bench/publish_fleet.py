"""Many simulated hosts publishing raptor messages to one Redis, as fast as it takes them.

    python -m bench.publish_fleet PORT HOSTS PER_HOST

Each host has its run id and a seq counting from 1, as a real listener would; the
messages are the real format (raptor.messages), about 700 bytes each, published and
appended to the history streams as the listener does (raptor.keys).
"""

from __future__ import annotations

import sys
import uuid

import redis

from raptor import keys
from raptor.keys import DEFAULT_CHANNEL
from raptor.messages import encode, history_entry, state_message
from raptor.publisher.process_table import blank_info


def main() -> None:
    port, hosts, per_host = (int(a) for a in sys.argv[1:4])
    client = redis.Redis(host="127.0.0.1", port=port)
    runs = {f"sim{h:04d}": uuid.uuid4().hex[:12] for h in range(hosts)}
    pipe = client.pipeline(transaction=False)
    for seq in range(1, per_host + 1):
        for host, run_id in runs.items():
            info = blank_info(f"node_example-v1-local-f96054b7-web-{5000 + seq % 50}", "g")
            info.update({"statename": "RUNNING", "state": 20, "pid": 1000 + seq, "start": 1_700_000_000})
            info["now"] = 1_700_000_001
            message = state_message(
                host, info, event="PROCESS_STATE_RUNNING", from_state="STARTING", seq=seq, run_id=run_id
            )
            pipe.publish(DEFAULT_CHANNEL, encode(message))
            entry = history_entry(message)
            pipe.xadd(keys.FLEET_HISTORY, entry, maxlen=keys.DEFAULT_FLEET_HISTORY_MAXLEN, approximate=True)
            pipe.xadd(keys.history_key(host), entry, maxlen=keys.DEFAULT_HISTORY_MAXLEN, approximate=True)
        if len(pipe) >= 1000:
            pipe.execute()
    pipe.execute()


if __name__ == "__main__":
    main()
