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
- ``proc_history`` (stream): every message of every host, as a history entry
  (:func:`raptor.messages.history_entry`), in the order published. The one place
  a consumer follows the fleet from and resumes by entry id; consumer groups
  (the alerter) read it. Trimmed to ``RAPTOR_FLEET_HISTORY_MAXLEN`` entries.
- ``host_history:<host>`` (stream): the same entries of one host only, what a
  history query reads. Each host trims its own (``RAPTOR_HISTORY_MAXLEN``), so a
  flapping host cannot evict another's history. Both streams also drop entries
  older than ``RAPTOR_HISTORY_MAX_AGE`` s.

Entries are field-value pairs, not the message's JSON: a stream stores a field
name once per node when entries share their fields, and what a consumer can
derive from host and name (id, jsname, the six parsed parts) is not stored. Measured
(``make bench-history``): about 190 MB of Redis per million entries, where the JSON message
would cost five times that.
"""

from __future__ import annotations

DEFAULT_CHANNEL = "proc_events"
SNAPSHOT_PREFIX = "host_procs:"
META_PREFIX = "host_meta:"
FLEET_HISTORY = "proc_history"
HISTORY_PREFIX = "host_history:"

# Seconds a host's records live without a refresh (every TICK_60 refreshes them).
DEFAULT_SNAPSHOT_TTL = 600
# A shorter TTL would let a snapshot expire between two TICK_60 refreshes.
MIN_SNAPSHOT_TTL = 120

# History retention, sized for a fleet of 1,000 hosts x 200 programs: a host keeps
# its last 5,000 transitions (six `restart all`s), at ~190 B each at most ~0.95 GB for
# the fleet; the fleet stream holds one `restart all` of the whole fleet (800,000)
# for consumers to catch up from, ~0.19 GB. Nothing older than a week.
DEFAULT_HISTORY_MAXLEN = 5_000
DEFAULT_FLEET_HISTORY_MAXLEN = 1_000_000
DEFAULT_HISTORY_MAX_AGE = 7 * 24 * 3600
# Below this, a consumer away for a minute during a `restart all` of 200 programs
# would already find a gap.
MIN_HISTORY_MAXLEN = 1_000
MIN_HISTORY_MAX_AGE = 3600

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


def history_key(host: str) -> str:
    return f"{HISTORY_PREFIX}{host}"


def host_of(key: str) -> str:
    """The host name in a ``host_procs:<host>``, ``host_meta:<host>`` or ``host_history:<host>`` key."""
    for prefix in (SNAPSHOT_PREFIX, META_PREFIX, HISTORY_PREFIX):
        if key.startswith(prefix):
            return key[len(prefix) :]
    raise ValueError(f"not a raptor host key: {key!r}")
