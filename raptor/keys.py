"""The Redis key contract: every name raptor writes, in one place.

The publisher (``proc_publisher``), every consumer (``raptor status``, ``watch``,
``tail``), the benchmarks and the tests import their key names from here; nothing
else spells them. Velociraptor's dashboard reads the channel and the snapshots
under these same names, so they do not change.

- ``proc_events`` (pub/sub channel, ``RAPTOR_CHANNEL``): one JSON message per
  process state change (:mod:`raptor.messages`).
- ``host_procs:<host>`` (hash, TTL ``RAPTOR_SNAPSHOT_TTL``): the host's processes,
  process name -> JSON process record.
- ``host_meta:<host>`` (hash, same TTL): the listener's own record, fields below.
"""

from __future__ import annotations

from typing import Tuple

DEFAULT_CHANNEL = "proc_events"
SNAPSHOT_PREFIX = "host_procs:"
META_PREFIX = "host_meta:"

# Seconds a host's records live without a refresh (every TICK_60 refreshes them).
DEFAULT_SNAPSHOT_TTL = 600
# A shorter TTL would let a snapshot expire between two TICK_60 refreshes.
MIN_SNAPSHOT_TTL = 120

# Fields of host_meta:<host>.
META_RUN_ID = "run_id"  # changes at every listener start; seqs count within one run
META_SEQ = "seq"  # the seq of the last message this run published
META_UPDATED = "updated"  # unix time of the last write
META_REFRESHED = "refreshed"  # unix time of the last full resync against supervisord
META_SUPERVISORD_ID = "supervisord_id"  # which supervisord publishes (raptor.publisher.identity)
META_VERSION = "version"  # raptor's version
META_PID = "pid"  # the listener's pid
META_STARTED = "started"  # unix time the listener started
META_PROCESSES = "processes"  # how many processes the listener knows
# The listener's counters (raptor.publisher.listener).
META_EVENTS = "events"  # events received from supervisord
META_DISCARDED = "discarded_by_supervisord"  # events supervisord discarded (poolserial gaps)
META_COALESCED = "coalesced"  # queued transitions replaced by a later one while Redis was away
META_ACKS = "acks"  # events acknowledged
META_ACK_P50_MS = "ack_p50_ms"  # ack latency percentiles (ms) over the recent acks
META_ACK_P99_MS = "ack_p99_ms"
META_ACK_MAX_MS = "ack_max_ms"


def snapshot_key(host: str) -> str:
    return f"{SNAPSHOT_PREFIX}{host}"


def meta_key(host: str) -> str:
    return f"{META_PREFIX}{host}"


def host_of(key: str) -> str:
    """The host name in a ``host_procs:<host>`` or ``host_meta:<host>`` key."""
    for prefix in (SNAPSHOT_PREFIX, META_PREFIX):
        if key.startswith(prefix):
            return key[len(prefix) :]
    raise ValueError(f"not a raptor host key: {key!r}")


def host_keys(host: str) -> Tuple[str, str]:
    """Both records of *host*: its snapshot and its meta."""
    return snapshot_key(host), meta_key(host)
