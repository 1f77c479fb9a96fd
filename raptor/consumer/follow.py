"""Following the fleet: the pub/sub loop, and the fleet view kept current from the history stream.

:class:`Subscriber` is the loop over the pub/sub channel (what Velociraptor's dashboard
reads; the tests' collector and raw recorders use it): subscribe, wait until Redis
confirms the subscription, tell the consumer it is connected (the moment to load
snapshots: nothing published from then on can be missed), hand on every JSON message
read whole, and after a failure reconnect with redis-py's backoff and start over.
What is published while it reconnects is lost. It never sleeps a fixed time and stops
on a callable or an event.

:class:`Follower` is a :class:`~raptor.consumer.fleet.Fleet` kept current from the
history stream by a :class:`~raptor.consumer.stream.StreamReader` (``raptor watch``
runs it): it takes the stream's end, loads every snapshot, then reads every entry
after that end, a batch at a time: each entry's seq is judged in order, and each
process's last state in the batch is applied (the view keeps the present; decoding only
that is what lets it catch up at 100,000 entries/s). After a disconnection it resumes
after the last entry it read, so nothing is lost and nothing reloaded. It reloads one host after a seq gap or a
listener restart (an entry older than the snapshot is recognised by its seq and
dropped), and every host when the reader reports a gap (retention trimmed entries it
had not read, or the stream was reset).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional, Sequence, Set, Tuple, cast

import redis
from redis.backoff import AbstractBackoff, EqualJitterBackoff

from .. import keys
from .fleet import Apply, Fleet, Host, Proc
from .seq import Seen
from .stream import FIELDS, UNREADABLE, Entry, EntryDecoder, Gap, StreamReader, stop_test, wait_unless_stopped
from .text import as_text

log = logging.getLogger("raptor.follow")
RELOAD_EVERY = 30.0  # seconds: picks up hosts that publish nothing, and refresh ages
MESSAGE_DEADLINE = 30.0  # seconds a message that has begun to arrive may take to arrive whole
SUBSCRIBE_DEADLINE = 10.0  # seconds Redis may take to confirm a subscription

Message = Dict[str, Any]
OnMessage = Callable[[Message, str], None]
# Redis is down or unreachable: worth a reconnect. (Bad credentials are not: see run().)
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _nothing(*args: Any) -> None:
    pass


def parse_message(data: Any) -> Optional[Dict[str, Any]]:
    """A channel message as a dict, or None for anything else (other subscribers
    publish plain strings such as "flush")."""
    try:
        message = json.loads(data)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def next_message(pubsub: Any, wait: float) -> Optional[Dict[str, Any]]:
    """The next pub/sub message, or None when none begins to arrive within ``wait``.

    Waiting and reading are split on purpose. redis-py 8 applies get_message()'s
    timeout to every socket read of a message; when a message arrives in parts
    further apart than that (a busy Redis writes a large MULTI/EXEC's output in
    pieces), it reconnects behind the caller's back and drops what it had buffered
    and what was published meanwhile. Here only the wait is short: a message that
    has begun is read to its end.
    """
    if not pubsub.connection.can_read(timeout=wait):
        return None
    message: Optional[Dict[str, Any]] = pubsub.get_message(timeout=MESSAGE_DEADLINE)
    return message


try:
    from redis.driver_info import DriverInfo

    # Given once: redis-py 8 would otherwise look its own version up in the package
    # metadata for every connection made (~1.3 ms each, a tenth of a history query).
    _DRIVER_INFO: Dict[str, Any] = {"driver_info": DriverInfo(lib_version=redis.__version__)}
except ImportError:  # redis-py before 7.2 reads it once, at import
    _DRIVER_INFO = {}


def make_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=3.0, socket_keepalive=True, health_check_interval=0, **_DRIVER_INFO
    )


class Subscriber:
    """The one consumer loop over a pub/sub channel; see the module's docstring.

    Its state, readable from any thread: ``connected`` (subscribed, and the consumer's
    ``on_connect`` done), ``connections`` (subscriptions made: more than one means it
    reconnected, and messages published meanwhile were lost), ``received`` (JSON
    objects handed on), ``non_json`` (other payloads, skipped), ``last_error``.
    """

    def __init__(self, client: redis.Redis, channel: str, *, backoff: Optional[AbstractBackoff] = None) -> None:
        self.client = client
        self.channel = channel
        self.backoff = backoff or EqualJitterBackoff(cap=2.0, base=0.1)
        self.connected = False
        self.connections = 0
        self.received = 0
        self.non_json = 0
        self.last_error: Optional[str] = None
        self._reported: Optional[bool] = None  # the state on_state last told

    def run(
        self,
        on_message: OnMessage,
        *,
        on_connect: Callable[[], None] = _nothing,
        on_state: Callable[[bool], None] = _nothing,
        on_idle: Callable[[], None] = _nothing,
        should_stop: Optional[Callable[[], bool]] = None,
        stop: Optional[threading.Event] = None,
        poll: float = 0.25,
    ) -> None:
        """Follow the channel until *should_stop()* is true or *stop* is set.

        - ``on_message(message, text)``: each JSON object published, in order, with the
          text it was published as.
        - ``on_connect()``: subscribed (again); called before any message of the new
          subscription. Load snapshots here: nothing published from now on is missed.
        - ``on_state(connected)``: the connection went up or down (each change once,
          the first connection or the first failed attempt included).
        - ``on_idle()``: nothing arrived within *poll* seconds, or a connection attempt
          failed: a moment to redraw.

        A Redis error raised by a hook (a failed load) counts as a lost connection.
        Bad credentials are not an outage: AuthenticationError is raised to the caller.
        """

        stopped = stop_test(stop, should_stop)
        failures = 0
        while not stopped():
            pubsub = self.client.pubsub()  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis-py 8.2 on
            try:
                self._subscribe(pubsub)
                self._up(on_connect, on_state)
                failures = 0
                self._pump(pubsub, stopped, poll, on_message=on_message, on_connect=on_connect, on_idle=on_idle)
            except redis.exceptions.AuthenticationError:
                raise
            except REDIS_DOWN as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.connected = False
                self._report(False, on_state)
                failures += 1
                # A hook that needs Redis while it is away fails too: that is known already.
                with contextlib.suppress(*REDIS_DOWN):
                    on_idle()
                wait_unless_stopped(self.backoff.compute(failures), stop, stopped, poll)
            finally:
                pubsub.close()
        self.connected = False

    def _subscribe(self, pubsub: Any) -> None:
        """Subscribe and wait for Redis to confirm: only then is the subscription live."""
        pubsub.subscribe(self.channel)
        deadline = time.monotonic() + SUBSCRIBE_DEADLINE
        while time.monotonic() < deadline:
            raw = next_message(pubsub, max(0.0, deadline - time.monotonic()))
            if raw is not None and raw["type"] == "subscribe":
                return
        raise redis.exceptions.TimeoutError(f"Redis did not confirm the subscription to {self.channel!r}")

    def _up(self, on_connect: Callable[[], None], on_state: Callable[[bool], None]) -> None:
        self.connections += 1
        on_connect()
        self.last_error = None
        self.connected = True
        self._report(True, on_state)

    def _report(self, connected: bool, on_state: Callable[[bool], None]) -> None:
        if self._reported is not connected:
            self._reported = connected
            on_state(connected)

    def _pump(
        self,
        pubsub: Any,
        stopped: Callable[[], bool],
        poll: float,
        *,
        on_message: OnMessage,
        on_connect: Callable[[], None],
        on_idle: Callable[[], None],
    ) -> None:
        while not stopped():
            raw = next_message(pubsub, poll)
            if raw is None:
                on_idle()
            elif raw["type"] == "message":
                text = as_text(raw["data"])
                message = parse_message(text)
                if message is None:
                    self.non_json += 1
                else:
                    self.received += 1
                    on_message(message, text)
            elif raw["type"] == "subscribe":
                # redis-py reconnected and re-subscribed on its own (a client with
                # retries): what was published meanwhile is lost, so start over as
                # after any reconnection.
                self._up(on_connect, _nothing)


# Where the values are in an entry as Redis sends it ([field, value, ...]).
_HOST, _NAME, _EVENT, _RUN_ID, _SEQ = (2 * FIELDS.index(key) + 1 for key in ("host", "name", "event", "run_id", "seq"))


class _Head(NamedTuple):
    host: str
    name: str
    event: str
    run_id: Any
    seq: Any
    message: Optional[Message]  # when it had to be decoded to be read


# An entry whose state a batch applies: its id, its fields as Redis sent them, and the
# message when it had to be decoded to be read.
_Pending = Tuple[str, Optional[Sequence[str]], Optional[Message]]


class Follower:
    """The fleet, kept current from the history stream by a :class:`StreamReader`.

    Its state, readable from any thread: ``messages`` (entries read), ``resyncs`` (host
    reloads after a seq gap or listener restart, and full reloads after a stream gap),
    ``gaps`` (stream gaps: see :class:`~raptor.consumer.stream.Gap`), ``last_gap``.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        fleet: Optional[Fleet] = None,
        backoff: Optional[AbstractBackoff] = None,
        stream: str = keys.FLEET_HISTORY,
    ) -> None:
        self.fleet = fleet if fleet is not None else Fleet()
        self.client = client
        self.reader = StreamReader(client, stream, backoff=backoff)
        self.messages = 0  # entries read
        self.resyncs = 0  # reloads: one host after a seq gap, all after a stream gap
        self.gaps = 0
        self.last_gap: Optional[Gap] = None
        self._loaded = False  # the fleet is current as of the reader's position

    @property
    def connected(self) -> bool:
        return self.reader.connected

    @property
    def last_error(self) -> Optional[str]:
        return self.reader.last_error

    def run(
        self,
        on_change: Callable[[Dict[str, Any]], None] = _nothing,
        on_idle: Callable[[], None] = _nothing,
        should_stop: Optional[Callable[[], bool]] = None,
        poll: float = 0.25,
        *,
        stop: Optional[threading.Event] = None,
        on_state: Callable[[bool], None] = _nothing,
        on_gap: Callable[[Gap], None] = _nothing,
    ) -> None:
        """Follow until stopped; ``on_change(message)`` for each process a batch read
        changed (its last message in the batch), ``on_gap(gap)`` after the fleet was
        reloaded for a stream gap. The
        other arguments are :meth:`StreamReader.run`'s."""
        next_reload = 0.0

        def load() -> None:
            nonlocal next_reload
            self._loaded = False
            self.fleet.load(self.client)
            self._loaded = True
            next_reload = time.monotonic() + RELOAD_EVERY

        def reload_when_due() -> None:
            if time.monotonic() >= next_reload:
                load()

        def on_connect() -> None:
            # The first time, and after a reload Redis interrupted; otherwise the
            # reader resumes where it was and the fleet is current.
            if not self._loaded:
                load()

        def on_batch(entries: Sequence[Entry]) -> int:
            try:
                taken = self.apply_entries(entries, on_change)
            except REDIS_DOWN:
                self._loaded = False  # a host's reload failed: reload all on return
                raise
            reload_when_due()
            return taken

        def gap(found: Gap) -> None:
            self.gaps += 1
            self.last_gap = found
            self.resyncs += 1
            load()
            on_gap(found)

        def idle() -> None:
            if self.reader.connected:  # while Redis is away, on_connect reloads on its return
                reload_when_due()
            on_idle()

        self.reader.run(
            _nothing,
            on_batch=on_batch,
            on_connect=on_connect,
            on_gap=gap,
            on_state=on_state,
            on_idle=idle,
            should_stop=should_stop,
            stop=stop,
            poll=poll,
        )

    def apply_entries(self, entries: Sequence[Entry], on_change: Callable[[Dict[str, Any]], None] = _nothing) -> int:
        """Apply a batch read from the stream; returns how many entries were raptor's.

        Every entry's seq is judged, in order, as :meth:`apply` does; but of each
        process only the batch's last state is made a message and applied (and given
        to *on_change*): the fleet view keeps the present, and decoding is most of a
        consumer's time (a restart's four transitions cost one)."""
        hosts = self.fleet.hosts
        latest: Dict[Tuple[str, str], _Pending] = {}
        taken = 0
        for entry_id, flat in entries:
            # The publisher's entries are read by position, inline (this loop runs
            # 100,000 times a second); any other takes _head's way.
            if flat is not None and flat[0::2] == FIELDS:
                host_name, name, event, run_id = flat[_HOST], flat[_NAME], flat[_EVENT], flat[_RUN_ID]
                message = None
                try:
                    seq: Any = int(flat[_SEQ])
                except ValueError as exc:
                    self.reader.skip(entry_id, exc)
                    continue
            else:
                head = self._head(entry_id, flat)
                if head is None:
                    continue
                host_name, name, event, run_id, seq, message = head
            taken += 1
            if not host_name:
                continue
            host = hosts.get(host_name)
            if host is None:
                host = hosts[host_name] = Host(host_name)
            seen = host.tracker.observe(run_id, seq).seen
            if seen is Seen.NEXT or seen is Seen.UNTRACKED:
                if event == "PROCESS_GROUP_REMOVED" or event.startswith("PROCESS_STATE_"):
                    latest[(host_name, name)] = (entry_id, flat, message)
            elif seen is not Seen.DUPLICATE:  # a gap, a new run, or joined mid-run
                # The host's snapshot, read now, is newer than this entry and those before it.
                for key in [key for key in latest if key[0] == host_name]:
                    del latest[key]
                self._reload(host_name, run_id, seq)
                message = self._message((entry_id, flat, message))
                if message is not None:
                    on_change(message)
        taken -= self._apply_latest(latest, on_change)
        self.messages += taken
        return taken

    def _apply_latest(
        self, latest: Mapping[Tuple[str, str], _Pending], on_change: Callable[[Dict[str, Any]], None]
    ) -> int:
        """Apply the last state of each process. One that cannot be decoded is skipped
        (not taken: the count of those is returned) and its host reloaded: its seq was
        judged already, and the states before it in the batch were not applied."""
        hosts = self.fleet.hosts
        reloaded: Set[str] = set()  # their snapshots, read now, are newer than the batch
        for (host_name, name), pending in latest.items():
            if host_name in reloaded:
                continue
            message = self._message(pending)
            if message is None:
                reloaded.add(host_name)
                tracker = hosts[host_name].tracker
                self._reload(host_name, tracker.run_id, tracker.seq)
                continue
            if message.get("event") == "PROCESS_GROUP_REMOVED":
                hosts[host_name].procs.pop(name, None)
            else:
                hosts[host_name].procs[name] = cast(Proc, message)  # a state message is a full proc record
            on_change(message)
        return len(reloaded)

    def _reload(self, host_name: str, run_id: Any, seq: Any) -> None:
        """Reload a host the fleet missed something of, from its snapshot (newer than the
        entry at (*run_id*, *seq*) that told). Without a meta record to say where its
        listener is (expired, or an old publisher), that entry's place is the best
        known: otherwise every next entry would look joined mid-run and reload it again."""
        self.resyncs += 1
        self.fleet.load(self.client, [host_name])
        host = self.fleet.hosts[host_name]
        if host.tracker.run_id is None:
            host.tracker.observe(run_id, seq)

    def _head(self, entry_id: str, flat: Optional[Sequence[str]]) -> Optional[_Head]:
        """What :meth:`apply_entries` judges an entry that is not in the publisher's
        layout by: the entry made a message; None (and skipped) for one that is not
        raptor's."""
        try:
            if flat is None:
                raise ValueError("deleted entry")
            message = self.reader.decode(dict(zip(flat[0::2], flat[1::2])))
        except UNREADABLE as exc:
            self.reader.skip(entry_id, exc)
            return None
        host, name, event = message.get("host"), message.get("name"), message.get("event", "")
        if not (isinstance(host, str) and isinstance(name, str) and isinstance(event, str)):
            return _Head("", "", "", None, None, message)  # counted, applied to nothing (as apply() does)
        return _Head(host, name, event, message.get("run_id"), message.get("seq"), message)

    def _message(self, pending: _Pending) -> Optional[Message]:
        entry_id, flat, message = pending
        if message is not None:
            return message
        decode = self.reader.decode
        try:
            if flat is None:  # not so: an entry without fields is decoded to be read
                raise ValueError("deleted entry")
            if isinstance(decode, EntryDecoder):
                return decode.flat(flat)
            return decode(dict(zip(flat[0::2], flat[1::2])))
        except UNREADABLE as exc:
            self.reader.skip(entry_id, exc)
            return None

    def handle(self, data: Any, on_change: Callable[[Dict[str, Any]], None]) -> None:
        """Apply one raw payload from the channel (non-JSON is ignored)."""
        message = parse_message(data)
        if message is not None:
            self.apply(message, on_change)

    def apply(self, message: Message, on_change: Callable[[Dict[str, Any]], None] = _nothing) -> Apply:
        """Apply one message; reload its host if the fleet missed something of it."""
        self.messages += 1
        verdict = self.fleet.apply(message)
        if verdict is Apply.RESYNC:
            self._reload(message["host"], message.get("run_id"), message.get("seq"))
        if verdict in (Apply.APPLIED, Apply.RESYNC):
            on_change(message)
        return verdict
