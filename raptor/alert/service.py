"""The alerter's loop over Redis: a consumer group on the fleet stream, one leader at a
time, its state and its outbox in Redis so that another alerter takes over where it
stopped.

- **One leader.** Every alerter of a group (``config.group``) tries for the lease
  ``raptor_alert:<group>:leader`` (SET NX PX, renewed every loop). Only the leader reads
  the stream; another waits and takes over when the lease expires.
- **Nothing missed, nothing twice.** The leader reads with XREADGROUP; a batch's entries
  are acknowledged (XACK) in the same MULTI/EXEC that saves what they changed (incidents,
  processes, notices not told yet) and queues the notices due (the outbox stream), and
  that transaction only runs while the lease is still this alerter's (WATCH). A new
  leader loads that state and first claims what the old one had read but not
  acknowledged (XAUTOCLAIM), so each entry counts once.
- **Delivered, then forgotten.** The leader sends each outbox entry (one notice to one
  target), retried with backoff while it fails, and deletes it once delivered. An
  alerter killed between a send and that delete sends it again after the takeover: the
  one case of a notice twice.

Redis keys (all ``raptor_alert:<group>:...``): ``leader`` (string), ``procs`` and
``incidents`` (hashes of JSON), ``notices`` and ``counters`` (strings), ``outbox`` (stream).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import redis

from .. import keys
from ..consumer.fleet import Fleet
from ..consumer.history import Transition
from ..consumer.stream import UNREADABLE, EntryDecoder, id_time
from ..consumer.text import as_text
from .config import HOST_KINDS, AlertConfig
from .deliver import Deliverer, Send, apprise_send
from .incidents import Change, Engine
from .notices import Notice, Notices

log = logging.getLogger("raptor.alert")

BATCH = 500
# Renew the lease if it is ours, else take it if free: 1 renewed, 2 taken, 0 someone else's.
LEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 2
end
return 0
"""
# Give the lease up if it is still ours (a planned stop: the other alerter need not wait
# for it to run out). PEXPIRE, not DEL: the alerter's ACL has no DEL.
RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], 1)
end
return 0
"""
# A consumer of the group that has nothing pending and was idle this long is forgotten at
# a takeover (XGROUP DELCONSUMER loses nothing then); otherwise every alerter ever started
# under a name of its own (the default name holds a pid) would stay listed for good.
FORGET_IDLE_MS = 24 * 3600 * 1000
OTHER_TARGET_KEPT = 24 * 3600.0  # seconds an outbox entry for a target this config lacks is kept


def key(group: str, what: str) -> str:
    return f"raptor_alert:{group}:{what}"


class Alerter:
    """One alerter of *config*'s group, as *consumer*; :meth:`run` until *stop* is set,
    or :meth:`step` by step (the tests)."""

    def __init__(
        self,
        client: redis.Redis,
        config: AlertConfig,
        *,
        consumer: str,
        send: Send = apprise_send,
        clock: Callable[[], float] = time.time,
        lease: float = 10.0,
        fleet_every: float = 15.0,
        block: float = 0.5,
        stream: str = keys.FLEET_HISTORY,
    ) -> None:
        self.client = client
        self.config = config
        self.consumer = consumer
        self.clock = clock
        self.lease = lease
        self.fleet_every = fleet_every
        self.block = block
        self.stream = stream
        self.group = config.group
        self.leading = False
        self._lease = client.register_script(LEASE_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)
        # The fleet's snapshots (one read per host) only matter to the host rules.
        self._host_rules = any(rule.kind in HOST_KINDS for rule in config.rules)
        self._decode = EntryDecoder()
        self._engine = Engine(config.rules)
        self._notices = Notices(config)
        self._deliverer = Deliverer(config.targets, send)
        self._queued: set[str] = set()  # outbox entries handed to the deliverer
        self._last_fleet = 0.0
        self._last_claim = 0.0
        self._outbox_after = "-"  # outbox entries already handed to the deliverer end here

    # -- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        group_made = False
        while not stop.is_set():
            try:
                if not group_made:
                    self.ensure_group()
                    group_made = True
                if not self.step():
                    stop.wait(min(self.lease / 3, 1.0))
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning("Redis unreachable (%s); retrying", type(exc).__name__)
                self._step_down()
                stop.wait(1.0)
            except redis.exceptions.ResponseError as exc:
                self._step_down()
                if "NOGROUP" in str(exc):  # Redis came back empty, or the stream was deleted
                    log.warning("the consumer group is gone; making it again at the stream's end")
                    group_made = False
                    continue
                log.error("Redis refused a command (%s); retrying in 30 s", exc)  # NOPERM: see the README's ACL
                stop.wait(30.0)
            except redis.exceptions.RedisError as exc:
                log.error("Redis error %s; retrying in 5 s", type(exc).__name__)
                self._step_down()
                stop.wait(5.0)
        if self.leading:
            self._step_down()
            try:
                self._release(keys=[key(self.group, "leader")], args=[self.consumer])
            except redis.exceptions.RedisError as exc:  # it runs out by itself
                log.warning("could not give the lead up (%s); it passes on when the lease runs out", exc)

    def ensure_group(self) -> None:
        """The consumer group, made at the stream's end the first time (only what happens
        from then on is alerted on)."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="$", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def step(self) -> bool:
        """One round: hold the lease, read, judge, save, deliver. False when another
        alerter leads."""
        held = int(self._lease(keys=[key(self.group, "leader")], args=[self.consumer, int(self.lease * 1000)]))
        if held == 0:
            self._step_down()
            return False
        entries: List[Tuple[str, Any]] = []
        now = self.clock()
        if held == 2 or not self.leading:
            self._take_over()
            entries += self._claim(0)
            self._last_claim = now
        elif now - self._last_claim >= self.lease:
            # Entries a paused ex-leader read after this alerter took over: nobody else
            # would ever acknowledge them.
            entries += self._claim(int(self.lease * 2000))
            self._last_claim = now
        if not entries:
            entries += self._read(self._notices.next_due())
        now = self.clock()
        changes = self._judge(entries, now)
        self._notices.add(changes, now)
        due = self._notices.due(now)
        if not self._save([entry_id for entry_id, _ in entries], due):
            self._step_down()
            return False
        self._deliver(now)
        return True

    # -- leadership -------------------------------------------------------------------------

    def _take_over(self) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(key(self.group, "procs"))
        pipe.hgetall(key(self.group, "incidents"))
        pipe.get(key(self.group, "notices"))
        pipe.get(key(self.group, "counters"))
        procs, incidents, notices, counters = pipe.execute()
        self._engine = Engine(self.config.rules)
        self._engine.load(_texts(procs), _texts(incidents), as_text(counters) if counters else None)
        self._notices = Notices(self.config)
        if notices:
            self._notices.loads(as_text(notices))
        self._deliverer.clear()
        self._queued.clear()
        self._outbox_after = "-"
        self.leading = True
        self._forget_idle_consumers()
        log.info("%s leads the alerters of group %s (%d incidents open)", self.consumer, self.group, len(incidents))

    def _forget_idle_consumers(self) -> None:
        """Housekeeping, best effort: an ACL without it must not stop the alerting."""
        try:
            consumers: Any = self.client.xinfo_consumers(self.stream, self.group)
            for consumer in consumers:
                name = as_text(consumer["name"])
                if name != self.consumer and consumer["pending"] == 0 and consumer["idle"] > FORGET_IDLE_MS:
                    self.client.xgroup_delconsumer(self.stream, self.group, name)
                    log.info("forgot consumer %s of group %s (idle, nothing pending)", name, self.group)
        except redis.exceptions.ResponseError as exc:
            log.warning("cannot forget idle consumers (%s): give the alerter's Redis user +xgroup|delconsumer", exc)

    def _step_down(self) -> None:
        if self.leading:
            log.info("%s no longer leads group %s", self.consumer, self.group)
        self.leading = False
        self._deliverer.clear()
        self._queued.clear()
        self._outbox_after = "-"

    # -- reading ----------------------------------------------------------------------------

    def _claim(self, min_idle_ms: int) -> List[Tuple[str, Any]]:
        """What another alerter read and did not acknowledge (it died, or paused, mid-batch)."""
        claimed: List[Tuple[str, Any]] = []
        cursor = "0-0"
        while True:
            reply: Any = self.client.xautoclaim(
                self.stream, self.group, self.consumer, min_idle_ms, cursor, count=BATCH
            )
            cursor, entries = as_text(reply[0]), reply[1]
            claimed += [(as_text(entry_id), fields) for entry_id, fields in entries if entry_id is not None]
            if cursor == "0-0":
                return claimed

    def _read(self, due: Optional[float]) -> List[Tuple[str, Any]]:
        # A quiet stream blocks the read: no longer than until a notice falls due.
        wait = self.block if due is None else min(self.block, max(due - self.clock(), 0.001))
        # Any: redis-py's reply types differ between its versions.
        reply: Any = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=BATCH, block=max(int(wait * 1000), 1)
        )
        return [(as_text(entry_id), fields) for _, entries in reply or [] for entry_id, fields in entries]

    # -- judging ----------------------------------------------------------------------------

    def _judge(self, entries: Sequence[Tuple[str, Any]], now: float) -> List[Change]:
        changes: List[Change] = []
        for entry_id, fields in entries:
            if not fields:
                continue  # trimmed away after it was read
            try:
                message = self._decode({as_text(k): as_text(v) for k, v in fields.items()})
                transition = Transition.from_message(entry_id, message, id_time(entry_id))
            except UNREADABLE:
                continue
            # The entry's time (Redis' clock, in ms), not the host's own whole-second `now`.
            transition = dataclasses.replace(transition, at=id_time(entry_id))
            app = message.get("app_name") or None
            changes += self._engine.transition(str(message["host"]), app, transition, seen=now)
        if len(entries) >= BATCH:
            # A backlog (a takeover, a restart): time stands at the last entry read until
            # it is caught up, so nothing is judged as lasting that did not.
            return changes + self._engine.tick(id_time(entries[-1][0]), seen=now)
        if self._host_rules and now - self._last_fleet >= self.fleet_every:
            self._last_fleet = now
            changes += self._engine.hosts(fleet_summary(self.client), now)
        changes += self._engine.tick(now)
        return changes

    # -- saving -----------------------------------------------------------------------------

    def _save(self, entry_ids: List[str], notices: List[Notice]) -> bool:
        """Acknowledge *entry_ids*, save the state and queue *notices*, in one transaction
        that runs only while the lease is still ours."""
        procs, incidents = self._engine.changed_records()
        counters = self._engine.changed_counters()
        leader = key(self.group, "leader")
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(leader)  # type: ignore[no-untyped-call,unused-ignore]
                owner = pipe.get(leader)
                if as_text(owner) != self.consumer:
                    return False
                pipe.multi()
                _write_hash(pipe, key(self.group, "procs"), procs)
                _write_hash(pipe, key(self.group, "incidents"), incidents)
                pipe.set(key(self.group, "notices"), self._notices.dumps())
                if counters is not None:
                    pipe.set(key(self.group, "counters"), counters)
                if entry_ids:
                    pipe.xack(self.stream, self.group, *entry_ids)
                for notice in notices:
                    for target in notice.targets:
                        pipe.xadd(key(self.group, "outbox"), {"target": target, "notice": _notice_json(notice)})
                pipe.execute()
            except redis.exceptions.WatchError:
                return False
        return True

    # -- delivering -------------------------------------------------------------------------

    def _deliver(self, now: float) -> None:
        outbox = key(self.group, "outbox")
        start = "(" + self._outbox_after if self._outbox_after != "-" else "-"
        queued: Any = self.client.xrange(outbox, start, "+", count=BATCH)
        for entry_id, fields in queued or []:
            ident = self._outbox_after = as_text(entry_id)
            values = {as_text(k): as_text(v) for k, v in fields.items()}
            if values.get("target") not in self.config.targets:
                # Queued by an alerter whose config names another target: during a rollout
                # the other alerter may still have it (and send it once it leads), so it is
                # kept for a day, then removed.
                if id_time(ident) < now - OTHER_TARGET_KEPT:
                    log.error("outbox entry %s is for target %r, which no config has had for a day: removed",
                              ident, values.get("target"))  # fmt: skip
                    self.client.xdel(outbox, ident)
                else:
                    log.warning("outbox entry %s is for target %r, which this alerter's config lacks: left for "
                                "an alerter that has it", ident, values.get("target"))  # fmt: skip
                continue
            self._deliverer.submit(_notice_of(values["notice"]), now, target=values["target"], ident=ident)
            self._queued.add(ident)
        # Sending stops after a third of the lease, so that the lease is renewed in time.
        for outcome in self._deliverer.run_due(now, budget=self.lease / 3):
            if outcome.delivered:
                self.client.xdel(outbox, outcome.ident)
                self._queued.discard(outcome.ident)
                log.info("delivered %r to %s", outcome.notice.title, outcome.target)


def fleet_summary(client: redis.Redis) -> Dict[str, Any]:
    """What the host rules read: ``raptor status --json`` without its per-host restart
    counts (an XRANGE of each host's history: work the alerter has no use for)."""
    fleet = Fleet()
    fleet.load(client)
    return Fleet.as_json(fleet.select(), fleet.find_duplicates(), time.time())


def _texts(mapping: Dict[Any, Any]) -> Dict[str, str]:
    return {as_text(k): as_text(v) for k, v in mapping.items()}


def _write_hash(pipe: Any, name: str, records: Dict[str, Optional[str]]) -> None:
    written = {field: value for field, value in records.items() if value is not None}
    deleted = [field for field, value in records.items() if value is None]
    if written:
        pipe.hset(name, mapping=written)
    if deleted:
        pipe.hdel(name, *deleted)


def _notice_json(notice: Notice) -> str:
    return json.dumps(
        {
            "title": notice.title,
            "body": notice.body,
            "targets": notice.targets,
            "keys": notice.keys,
            "what": notice.what,
        }
    )


def _notice_of(text: str) -> Notice:
    data: Dict[str, Any] = json.loads(text)
    keys_ = tuple((k[0], k[1], k[2]) for k in data["keys"])
    return Notice(data["title"], data["body"], tuple(data["targets"]), keys_, data["what"])
