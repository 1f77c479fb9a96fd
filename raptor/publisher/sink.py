"""The Redis sink: the one thread that talks to Redis and to supervisord.

It takes what the event path queued, publishes it in order in MULTI/EXEC batches
(messages, snapshot fields and the host's meta record together, so a consumer
never sees one without the others), and *resyncs*: one ``getAllProcessInfo()``
diffed against the snapshot stored in Redis, publishing a message for every
process whose state differs and replacing the snapshot atomically. A resync runs
at start, after Redis comes back, on every TICK, when supervisord discarded events,
when the outbox had to coalesce, and once after each burst has settled.

What Redis refuses for lack of an ACL permission is said once, naming the
permission, and retried every PERMISSION_RETRY s; a key of the wrong type in place
of one of this host's records is deleted and rewritten.

This module does the I/O; what to write is decided in :mod:`.plan`, when in
:mod:`.schedule`, and what a refusal means in :mod:`.acl`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import redis
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

from .. import keys
from ..config import ListenerConfig
from ..logs import Throttle
from ..messages import Message, encode
from .acl import Refused, permissions_used, refusal
from .events import GroupChange
from .outbox import Item, Outbox
from .plan import meta_record, plan_batch, plan_resync
from .process_table import ProcessInfo, ProcessTable, normalize_info, same_state
from .schedule import BEHIND, SETTLE_DELAY, Schedule, routine
from .supervisor_rpc import SupervisorRPC

log = logging.getLogger("raptor.sink")

BATCH_SIZE = 512
# Longest wait between two attempts while Redis is away: bounds the time from
# Redis' return to a converged snapshot.
RECONNECT_CAP = 1.0
# A missing ACL permission does not come back by itself: retry what Redis refused
# this rarely, and repeat the log line this rarely.
PERMISSION_RETRY = 30.0
REFUSAL_LOG_INTERVAL = 600.0
OWNED_KEYS = (
    f"{keys.SNAPSHOT_PREFIX}<host>, {keys.META_PREFIX}<host>, {keys.HISTORY_PREFIX}<host> and {keys.FLEET_HISTORY}"
)
# Calls after getAllProcessInfo() before a routine resync trusts that supervisord held
# no event for this listener (each answer is one more turn of its loop, in which it
# would have handed one over), then a pause in which a woken reader gets the CPU.
BARRIER_CALLS = 2
REST_CHECK = 0.2
# A routine resync asked for by an event (a TICK) starts while the reader still answers
# it: it waits this long at most for the reader to be back at rest.
REST_WAIT = 0.2


def _wrong_type(reply: Any) -> bool:
    return isinstance(reply, redis.exceptions.ResponseError) and str(reply).startswith("WRONGTYPE")


def _differs(truth: Sequence[ProcessInfo], stored: Mapping[str, ProcessInfo]) -> bool:
    """Whether a process of *truth* is not stored, or stored in another state."""
    for info in truth:
        old = stored.get(info["name"])
        if old is None or not same_state(old, info):
            return True
    return False


def make_redis_client(config: ListenerConfig) -> redis.Redis:
    """A client whose own Retry absorbs blips; longer outages are the sink's business."""
    return redis.Redis.from_url(
        config.redis_url,
        socket_timeout=5.0,
        socket_connect_timeout=3.0,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(EqualJitterBackoff(base=0.05, cap=0.5), retries=2),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        client_name=f"proc_publisher-{os.getpid()}",
    )


class RedisSink:
    def __init__(
        self,
        config: ListenerConfig,
        outbox: Outbox,
        client: redis.Redis,
        rpc: Optional[SupervisorRPC],
        *,
        run_id: Optional[str] = None,
        clock: Callable[[], float] = time.time,
        batch_size: int = BATCH_SIZE,
        settle_delay: float = SETTLE_DELAY,
        permission_retry: float = PERMISSION_RETRY,
        meta: Optional[Callable[[], Dict[str, Any]]] = None,
        input_at_rest: Optional[Callable[[], Optional[int]]] = None,
    ) -> None:
        """*input_at_rest*: the listener's :meth:`EventListenerProtocol.at_rest`; without
        it, a routine resync trusts the quiet time alone."""
        self._config = config
        self._outbox = outbox
        self._client = client
        self._rpc = rpc
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._clock = clock
        self._batch_size = batch_size
        self._permission_retry = permission_retry
        self._extra_meta = meta
        self._at_rest = input_at_rest
        self._table = ProcessTable()
        self._seq = 0
        # The last resync stored supervisord's own word: events older than it can be told.
        self._ordered = False
        # Differences a routine resync saw and held back until the next one sees them again.
        self._unconfirmed: Dict[str, Tuple[Optional[ProcessInfo], ProcessInfo]] = {}
        # Settle resyncs refresh what events do not carry: only supervisord knows it.
        self._schedule = Schedule(clock, settle_delay=None if rpc is None else settle_delay)
        self._outage_since: Optional[float] = None
        self._started_at = clock()
        self._throttle = Throttle(log)
        self._refusals = Throttle(log, interval=REFUSAL_LOG_INTERVAL)
        self._refused: Set[str] = set()  # permissions Redis refused, until a command needing them goes through
        # The batch in hand until its EXEC ran: sent again first and unchanged, so that
        # a batch whose fate is unknown (the link broke during EXEC) keeps its seqs.
        self._unsent: List[Item] = []
        self._wrong_typed: Set[str] = set()  # this host's records found holding another type
        # What getAllProcessInfo() may list that the table has no log paths for: every
        # process until it was first asked, then the groups added since it was last asked.
        self._asked = False
        self._added_groups: Set[str] = set()
        # The batch last checked for them: a batch retried whole (Redis down) is not
        # checked again, or its PROCESS_GROUP_ADDED would ask at every retry.
        self._checked: Optional[List[Item]] = None
        self._backoff = EqualJitterBackoff(base=0.05, cap=RECONNECT_CAP)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raptor-redis-sink", daemon=True)
        self.published = 0
        self.resyncs = 0
        self.path_lookups = 0

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Publish what is queued (while Redis answers), then end the thread."""
        self._stopping.set()
        self._outbox.close()
        self._thread.join(timeout)

    # -- main loop -------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while True:
            items = self._unsent or self._outbox.take(self._batch_size, timeout=self._schedule.idle_timeout())
            reason = self._outbox.take_resync_request()
            if reason:
                self._schedule.request(reason)
            try:
                if items:
                    self._publish(items)
                self._upkeep()
            except Exception as exc:  # never die of the outside world
                failures += 1
                delay = self._on_failure(exc, failures)
                if self._stopping.is_set():
                    return
                self._stopping.wait(delay)
                continue
            if failures:
                failures = 0
                self._on_recovery()
            if self._stopping.is_set() and not self._unsent and self._outbox.pending() == 0:
                return

    def _upkeep(self) -> None:
        """Repairs, heartbeat and resyncs. When Redis refuses one of them for lack of
        a permission, they all wait *permission_retry* s, but publishing goes on."""
        if self._schedule.paused():
            return
        try:
            self._repair_wrong_types()
            self._resync_if_due()
        except Refused as refused:
            self._report_refusal(refused)
            self._schedule.pause(self._permission_retry)

    def _resync_if_due(self) -> None:
        if not self._schedule.may_resync(queued=self._outbox.pending()):
            return  # publish what is queued first; the resync then corrects it
        if self._schedule.heartbeat_due() and self._records_missing():
            self._schedule.request("this host's records are missing from Redis")
        reason = self._schedule.resync_due()
        if reason is not None:
            self._resync(reason)

    def _records_missing(self) -> bool:
        """One EXISTS counts both records. The snapshot hash only exists while it has
        fields: a host without processes has none."""
        keys = [self._config.meta_key]
        if len(self._table):
            keys.append(self._config.snapshot_key)
        return int(self._call(["EXISTS", *keys], lambda: self._client.exists(*keys))) < len(keys)

    def _repair_wrong_types(self) -> None:
        """Delete this host's records that hold another type than a hash (an operator's
        mistake, another tool): every write to them fails until then. The resync
        rewrites them."""
        for key in sorted(self._wrong_typed):
            self._delete(key)
            self._wrong_typed.discard(key)
            self._schedule.request(f"{key} was repaired", at_once=True)

    def _delete(self, key: str) -> None:
        self._call(["DEL", key], lambda: self._client.delete(key))

    def _report_wrong_type(self, key: str) -> None:
        self._throttle.log(
            f"wrongtype:{key}",
            logging.WARNING,
            "%s held another type than raptor writes there (WRONGTYPE: written by another tool?): deleting it and "
            "rewriting this host's records; raptor owns the keys %s",
            key,
            OWNED_KEYS,
        )

    def _on_failure(self, exc: Exception, failures: int) -> float:
        """Log *exc* (once in a while) and return how long to wait before trying again."""
        if isinstance(exc, Refused):
            self._report_refusal(exc)
            return self._permission_retry
        if isinstance(exc, redis.exceptions.RedisError):
            if self._outage_since is None:
                self._outage_since = self._clock()
            self._throttle.log(
                "redis",
                logging.WARNING,
                "Redis at %s unavailable (%s: %s); acknowledging events and keeping the latest state "
                "of each process until it is back",
                self._config.redacted_redis_url,
                type(exc).__name__,
                exc,
            )
        elif isinstance(exc, OSError):
            self._throttle.log("sink", logging.ERROR, "publishing failed: %s: %s", type(exc).__name__, exc)
        else:
            # Neither Redis nor the network: a bug met while building this batch (or a
            # resync). Sent again, it would fail again and hold up everything queued
            # behind it: drop it; the resync below (the repair path) publishes the
            # state it was about.
            dropped, self._unsent = len(self._unsent), []
            self._throttle.log(
                "bug",
                logging.ERROR,
                "publishing failed (%s: %s): dropped a batch of %d events; resyncing",
                type(exc).__name__,
                exc,
                dropped,
                exc_info=exc,
            )
            self._schedule.request("a batch was dropped")
        self._schedule.request("Redis reconnected", at_once=True)
        return float(self._backoff.compute(failures))

    def _report_refusal(self, refused: Refused) -> None:
        self._refused.add(refused.permission)
        user = self._client.connection_pool.connection_kwargs.get("username") or "default"
        self._refusals.log(
            refused.permission,
            logging.ERROR,
            "Redis user %s lacks the ACL permission %s (%s refused: %s); grant it, e.g. ACL SETUSER %s %s "
            "(README: Redis permissions); retrying every %.0f s",
            user,
            refused.permission,
            refused.command,
            refused.reason,
            user,
            refused.permission,
            self._permission_retry,
        )

    def _went_through(self, commands: Iterable[Sequence[str]]) -> None:
        """*commands* went through: the permissions they needed are granted (again)."""
        if not self._refused:
            return
        used = permissions_used(commands)
        for permission in sorted(self._refused):
            if set(permission.split()) <= used:
                self._refused.discard(permission)
                self._refusals.clear(permission)
                log.warning("Redis now grants the ACL permission %s", permission)

    # -- Redis calls -----------------------------------------------------------
    # Every call goes through one of these two: a refusal becomes a Refused naming
    # the permission, and a success tells that refused permissions were granted.

    def _call(self, command: Sequence[str], call: Callable[[], Any]) -> Any:
        """*call*, which sends *command*."""
        try:
            reply = call()
        except redis.exceptions.ResponseError as exc:
            refused = refusal(exc, command)
            if refused is None:
                raise
            raise refused from exc
        self._went_through([command])
        return reply

    def _exec(self, pipe: Any) -> List[Tuple[List[str], Any]]:
        """EXEC the transaction in *pipe*: each command with its reply, or with the error
        it met once the EXEC ran (Redis does not undo the others: what ran, ran).
        Raises if nothing ran, or if the link broke and what ran is unknown."""
        commands = [[str(arg) for arg in args] for args, _ in pipe.command_stack]
        try:
            replies = list(pipe.execute(raise_on_error=False))
        except redis.exceptions.ResponseError as exc:
            refused = refusal(exc)
            if refused is None:
                raise
            if refused.permission != "+multi":
                # Refused while queuing (Redis discarded the transaction) or EXEC itself
                # refused, which leaves the connection inside MULTI: a later command on
                # it would only be QUEUED. Start from fresh connections.
                self._client.connection_pool.disconnect()
                raise refused from exc
            replies = [refused] * len(commands)  # without MULTI, each command ran on its own
        if not any(isinstance(reply, Exception) for reply in replies):
            self._went_through([["MULTI"], *commands, ["EXEC"]])
        return list(zip(commands, replies))

    def _check_replies(self, replies: List[Tuple[List[str], Any]]) -> None:
        """After an EXEC that ran: note the records of the wrong type for repair, raise
        any other error (as a Refused when it is one)."""
        failed = [(command, reply) for command, reply in replies if isinstance(reply, Exception)]
        for command, reply in failed:
            if _wrong_type(reply):
                self._wrong_typed.add(command[1])
                self._report_wrong_type(command[1])
        for command, reply in failed:
            if not _wrong_type(reply):
                raise refusal(reply, command) or reply

    def _on_recovery(self) -> None:
        if self._outage_since is not None:
            log.warning("Redis reachable again after %.1f s; snapshot resynced", self._clock() - self._outage_since)
            self._outage_since = None
        self._throttle.clear("redis")
        self._throttle.clear("sink")

    # -- publishing ------------------------------------------------------------

    def _meta(self, pipe: Any, now: float, refreshed: bool) -> None:
        record = meta_record(
            run_id=self.run_id,
            seq=self._seq,
            now=now,
            started=self._started_at,
            processes=len(self._table),
            pid=os.getpid(),
            refreshed=refreshed,
            extra={} if self._extra_meta is None else self._extra_meta(),
        )
        pipe.hset(self._config.meta_key, mapping=record)
        pipe.expire(self._config.meta_key, self._config.snapshot_ttl)

    def _add(self, pipe: Any, messages: Sequence[Message], entries: Sequence[Dict[str, str]]) -> None:
        """Publish *messages* and append their *entries* to the fleet's and this host's
        history (:mod:`raptor.keys`), each stream trimmed to its length."""
        config = self._config
        for message, entry in zip(messages, entries):
            pipe.publish(config.channel, encode(message))
            pipe.xadd(keys.FLEET_HISTORY, entry, maxlen=config.fleet_history_maxlen, approximate=True)
            pipe.xadd(config.history_key, entry, maxlen=config.history_maxlen, approximate=True)

    def _trim(self, pipe: Any, now: float) -> None:
        """Drop history older than its age limit. Every resync does (at least every
        TICK_60): with ``~``, Redis only drops whole nodes, so this is cheap."""
        oldest = f"{int((now - self._config.history_max_age) * 1000)}-0"
        pipe.xtrim(keys.FLEET_HISTORY, minid=oldest, approximate=True)
        pipe.xtrim(self._config.history_key, minid=oldest, approximate=True)

    def _publish(self, items: List[Item]) -> None:
        """Publish *items* in one transaction. They stay in hand (``_unsent``) until
        its EXEC ran, whatever fails after that."""
        self._unsent = items
        self._learn_log_paths(items)
        now = self._clock()
        plan = plan_batch(
            items, self._table, host=self._config.hostname, run_id=self.run_id, seq=self._seq, ordered=self._ordered
        )
        if plan.behind:
            log.debug("%d events older than the state published left out", plan.behind)
            self._schedule.request(BEHIND)
        if plan.group_added:
            self._schedule.settle()  # the settle resync reports the new group's processes
        if not plan.messages:
            self._unsent = []
            return  # only PROCESS_GROUP_ADDED: nothing to say until the settle resync
        pipe = self._client.pipeline(transaction=True)
        self._add(pipe, plan.messages, plan.entries)
        if plan.updated:
            pipe.hset(self._config.snapshot_key, mapping={name: encode(info) for name, info in plan.updated.items()})
        if plan.removed:
            pipe.hdel(self._config.snapshot_key, *plan.removed)
        pipe.expire(self._config.snapshot_key, self._config.snapshot_ttl)
        previous_seq, self._seq = self._seq, plan.seq
        try:
            self._meta(pipe, now, refreshed=False)
            replies = self._exec(pipe)
        except BaseException:
            self._seq = previous_seq  # the same batch is sent again with the same seqs
            raise
        self._unsent = []
        self._schedule.published()
        for info in plan.updated.values():
            self._table.set(info)
        for name in plan.removed:
            self._table.discard(name)
        self.published += len(plan.messages)
        if plan.updated:
            self._schedule.settle()
        self._check_replies(replies)

    def _learn_log_paths(self, items: List[Item]) -> None:
        """Before *items* are published: when one is a state change of a process whose
        log paths supervisord may give and the table lacks (it was never asked: the
        events queued before the start-up resync; or its group was added since), ask
        it once (getAllProcessInfo(), for the paths only: the state stays the events').
        No event carries them, and a message without them would blank them on
        Velociraptor's dashboard. Here, off the event path, in the sink's own time."""
        if self._rpc is None or items is self._checked:
            return
        if self._lacks_log_paths(items):
            self.path_lookups += 1
            if self._fetch_truth() is None:
                return  # not answered: asked again at this batch's retry or the next batch
        self._checked = items

    def _lacks_log_paths(self, items: Sequence[Item]) -> bool:
        for item in items:
            if isinstance(item, GroupChange):
                if item.added:
                    self._added_groups.add(item.group)
            elif item.group in self._added_groups or (not self._asked and self._table.paths(item.name) is None):
                return True
        return False

    # -- resync ----------------------------------------------------------------

    def _fetch_truth(self) -> Optional[List[ProcessInfo]]:
        """supervisord's getAllProcessInfo(), whose log paths the table learns; None
        when there is no RPC or it failed (asked again by the resync that follows)."""
        if self._rpc is None:
            return None
        try:
            raw = self._rpc.get_all_process_info()
        except Exception as exc:
            self._throttle.log(
                "rpc",
                logging.WARNING,
                "getAllProcessInfo() on %s failed (%s: %s); using raptor's own state until it answers",
                self._rpc.server_url,
                type(exc).__name__,
                exc,
            )
            return None
        if self._throttle.clear("rpc"):
            log.warning("supervisord answers getAllProcessInfo() again")
        # Every group added before this call is in its answer (a PROCESS_GROUP_ADDED the
        # sink takes after it only makes it ask once more); a failed call changes nothing.
        self._asked = True
        self._added_groups.clear()
        truth = []
        for entry in raw:
            try:
                truth.append(normalize_info(entry))
            except (KeyError, TypeError, ValueError) as exc:
                self._throttle.log("rpc-entry", logging.WARNING, "ignoring malformed process info %r: %s", entry, exc)
        self._table.learn(truth)
        return truth

    def _read_stored(self) -> Dict[str, ProcessInfo]:
        stored: Dict[str, ProcessInfo] = {}
        key = self._config.snapshot_key
        try:
            raw: Dict[Any, Any] = self._call(["HGETALL", key], lambda: self._client.hgetall(key))
        except redis.exceptions.ResponseError as exc:
            if not _wrong_type(exc):
                raise
            self._report_wrong_type(key)
            return stored  # nothing usable stored: the resync deletes the key and writes it anew
        for name, value in raw.items():
            try:
                stored[name.decode("utf-8", "replace")] = normalize_info(json.loads(value))
            except (KeyError, TypeError, ValueError):
                continue  # not ours, or from an incompatible version: the resync rewrites it
        return stored

    def _reader_at_rest(self) -> Optional[int]:
        """The reader's count of events read once it is at rest (waiting at most
        REST_WAIT), or None."""
        assert self._at_rest is not None
        deadline = time.monotonic() + REST_WAIT
        count = self._at_rest()
        while count is None and time.monotonic() < deadline and not self._stopping.is_set():
            self._stopping.wait(0.005)
            count = self._at_rest()
        return count

    def _caught_up(self, before: Optional[int]) -> bool:
        """Whether supervisord held no event for this listener when it answered the
        resync's getAllProcessInfo(): the reader was at rest (*before*) and still is,
        having read nothing, after BARRIER_CALLS more calls and REST_CHECK s (time for a
        reader woken by an event, on a loaded machine, to get the CPU and count it). A
        quiet time alone is not proof: the listener or supervisord may just not have run."""
        if self._at_rest is None or self._rpc is None:
            return True
        if before is None:
            return False
        try:
            for _ in range(BARRIER_CALLS):
                self._rpc.get_pid()
        except Exception as exc:  # supervisord away or refusing: nothing confirmed this time
            self._throttle.log(
                "barrier", logging.WARNING, "getPID() failed (%s: %s): differences stay held", type(exc).__name__, exc
            )
            return False
        self._stopping.wait(REST_CHECK)
        return self._at_rest() == before

    def _resync(self, reason: str) -> None:
        confirm = routine(reason)
        before = self._reader_at_rest() if confirm and self._at_rest is not None else None
        truth = self._fetch_truth()
        stored = self._read_stored()
        # The check costs two calls and REST_CHECK: made only when there is something to confirm.
        caught_up = not confirm or truth is None or not _differs(truth, stored) or self._caught_up(before)
        now = self._clock()
        plan = plan_resync(
            truth,
            stored,
            self._table.entries(),
            host=self._config.hostname,
            run_id=self.run_id,
            seq=self._seq,
            now=now,
            confirm=confirm,
            unconfirmed=self._unconfirmed,
            listener=self._config.process_name,
            caught_up=caught_up,
        )
        key = self._config.snapshot_key
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(key)
        if plan.target:
            pipe.hset(key, mapping={name: encode(info) for name, info in plan.target.items()})
            pipe.expire(key, self._config.snapshot_ttl)
        self._add(pipe, plan.messages, plan.entries)
        self._trim(pipe, now)
        previous_seq, self._seq = self._seq, plan.seq
        previous_table = self._table.entries()
        self._table.replace(plan.target.values())
        try:
            self._meta(pipe, now, refreshed=True)
            replies = self._exec(pipe)
        except BaseException as exc:
            if not isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
                # Nothing ran. When the link broke instead, these corrections may have
                # been published: their seqs are not given to other messages (a gap
                # makes consumers re-read the snapshot; a reused seq would be dropped).
                self._seq = previous_seq
            self._table.replace(previous_table.values())
            raise
        self._ordered = truth is not None
        if caught_up:  # a sighting made while events were arriving neither confirms nor forgets
            self._unconfirmed = dict(plan.unconfirmed)
        self.published += len(plan.messages)
        self.resyncs += 1
        # Without supervisord's answer, it is asked again soon: it is the only authority.
        self._schedule.resynced(reason, started=now, retry=truth is None and self._rpc is not None)
        if plan.held:
            self._schedule.settle()  # look again once quiet; what is still different then is reported
        log.log(
            logging.INFO if plan.messages else logging.DEBUG,
            "resync (%s): %d processes, %d corrections published, %d differences held%s",
            reason,
            len(plan.target),
            len(plan.messages),
            len(plan.held),
            "" if caught_up else " (events were still arriving)",
        )
        self._check_replies(replies)
