"""Following the history stream: resume after the last entry read, and say what retention dropped.

The publisher appends every message to ``proc_history`` (:mod:`raptor.keys`) in the
same MULTI/EXEC as the PUBLISH and the snapshot write. :class:`StreamReader` is the loop
a consumer runs over it (``raptor tail``, ``raptor watch``, :class:`~raptor.consumer.follow.Follower`):

- **Start.** At the end (nothing old, like a subscription: the position is the
  stream's ``last-generated-id``, taken with ``entries-added`` in one XINFO), or at a
  given entry id (``raptor tail --since``). ``on_connect`` runs once the position is
  taken and before anything is read: the moment to load the snapshots, so that nothing
  falls between them and the first entry read (an entry older than a snapshot carries a
  seq the snapshot's meta already counts, and the seq tracker drops it).
- **Read.** ``XREAD COUNT <count> STREAMS proc_history <last id>`` in batches; when a
  batch comes back short the reader is caught up and waits with ``XREAD BLOCK <poll>``.
  Each entry becomes a message with :func:`raptor.messages.message_from_entry`; one that
  does not parse is counted, logged once, and skipped. The position moves past every
  entry read, parsed or not.
- **Resume.** Any connection error (Redis down, restarted, the link cut) ends the read;
  the loop reconnects with redis-py's backoff and reads on from the last entry id it
  handled: nothing is read twice, nothing is skipped. The reading connection has no
  retries of its own, so that every reconnection passes here.
- **Gaps.** Every read made when not caught up (the first after a (re)connection, and
  each one after a full batch) runs in one MULTI with ``XINFO STREAM``, so the check
  and the read see the same stream:

  - retention trimmed entries before they were read: the reader keeps the stream's
    ``entries-added`` as of its position (taken with the position at start, and exact
    again whenever a read reaches the end). Trimming cuts the head, so when the
    stream's first entry is past the position, every entry left is unread and
    ``lost = entries-added - position's count - length``. (``max-deleted-entry-id``
    would not do: Redis 7 moves it on XDEL only, not when XADD MAXLEN/MINID or XTRIM
    trim.) After a start at an id (``--since``) the position's count is unknown until
    the reader reaches the end: a trim past the position is then a gap of unknown size.
  - the stream gone, or its ``last-generated-id`` / ``entries-added`` below the
    reader's position: it was deleted or recreated (Redis restarted empty, FLUSHALL).
    The reader starts again at ``0-0`` of the new stream; what the old one held after
    the position is lost (count unknown).

  Either way ``on_gap(Gap)`` tells the consumer, which reloads from the snapshots. A
  read made while caught up (the blocking one) is not checked: between being caught up
  and that read, retention would have to drop more entries than were added since, which
  the minimum retention (:data:`raptor.keys.MIN_HISTORY_MAXLEN`) excludes. On Redis 6
  (no ``entries-added``) trimming is seen through the per-host seq gaps only.
- **Absent stream.** No publisher yet, or an old one that only PUBLISHes: the reader
  waits on the key (XREAD BLOCK on a missing key) and reads it from ``0-0`` once it
  appears.

Catch-up speed is mostly redis-py's reply parser's: with ``hiredis`` (the ``cli``
extra) one reader turns about 120,000 entries/s into messages on one core of this
project's 2-core machine (``bench/history.py``); without hiredis, ~17,000/s.
:class:`EntryDecoder` reads entries by position and keeps what repeats per process;
batches are read and handled with Python's cyclic collector paused; a consumer that
needs only some entries decoded takes whole batches (``on_batch``: the Follower).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import redis
from redis.backoff import AbstractBackoff, EqualJitterBackoff, NoBackoff
from redis.retry import Retry

from .. import keys
from ..messages import HISTORY_FIELDS, iso_utc, message_from_entry

log = logging.getLogger("raptor.stream")

BATCH = 1000  # entries per read: one round trip, a few ms of Redis' time
REPLY_DEADLINE = 30.0  # seconds a reply may take beyond the BLOCK time before the link counts as dead
START = "0-0"
MAX_SEQ = 2**64 - 1

Message = Dict[str, Any]
Entry = Tuple[str, Optional[Sequence[str]]]  # id, [field, value, ...] as XREAD sends it
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
# What decoding an entry that is not raptor's raises (OverflowError: a time past year 9999).
UNREADABLE = (KeyError, ValueError, TypeError, AttributeError, IndexError, OverflowError)
_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")  # fullmatch: no trailing newline, ASCII digits only


def _nothing(*args: Any) -> None:
    pass


# -- entry ids ------------------------------------------------------------------------


def parse_id(entry_id: str) -> Tuple[int, int]:
    """``"<ms>-<seq>"`` as a pair that sorts as Redis sorts ids; ValueError otherwise."""
    match = _ID.fullmatch(entry_id)
    if match is None:
        raise ValueError(f"not a stream entry id: {entry_id!r}")
    return int(match.group(1)), int(match.group(2))


def id_before(entry_id: str) -> str:
    """The id just before *entry_id*: reading after it reads *entry_id* itself first."""
    ms, seq = parse_id(entry_id)
    if seq > 0:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{MAX_SEQ}" if ms > 0 else START


def id_at(epoch: float) -> str:
    """The first id of the millisecond *epoch* falls in (ids are Redis server time)."""
    return f"{max(0, int(epoch * 1000))}-0"


def id_time(entry_id: str) -> float:
    """The epoch (Redis server time) at which the entry was added."""
    return parse_id(entry_id)[0] / 1000.0


def server_time(client: redis.Redis) -> float:
    """Redis' clock (the one entry ids are made of); this machine's for a user whose
    ACL does not allow TIME."""
    try:
        seconds, micros = client.time()
    except redis.exceptions.ResponseError:  # NoPermissionError among them
        return time.time()
    return float(seconds) + micros / 1e6


# -- messages from entries ------------------------------------------------------------


FIELDS = list(HISTORY_FIELDS)
_AT = {name: index for index, name in enumerate(HISTORY_FIELDS)}
(_HOST, _NAME, _EVENT, _GROUP, _STATENAME, _STATE, _FROM, _PID, _EXIT, _EXPECTED, _NOW, _START, _STOP,
 _DESCRIPTION, _SPAWNERR, _SEQ, _RUN_ID, _RESYNC) = (
    _AT[name] for name in ("host", "name", "event", "group", "statename", "state", "from_state", "pid", "exitstatus",
                           "expected", "now", "start", "stop", "description", "spawnerr", "seq", "run_id", "resync")
)  # fmt: skip


class EntryDecoder:
    """:func:`raptor.messages.message_from_entry`, faster where entries repeat: the first
    message of each process (host, name, group) is ``message_from_entry``'s, and of the
    next ones only the per-entry fields are made anew, on a copy of it; the ISO times of
    the epochs seen are kept. :meth:`flat` takes an entry as Redis sends it (field,
    value, ...): with the publisher's fields in :data:`~raptor.messages.HISTORY_FIELDS`'
    order it reads them by position, without making a dict.

    Equal to ``message_from_entry`` for every entry (tests/test_stream_follow.py checks
    it); an entry it cannot decode raises as ``message_from_entry`` does (KeyError,
    ValueError). Removals are rare: they are ``message_from_entry``'s every time."""

    __slots__ = ("_iso", "_templates")

    def __init__(self) -> None:
        self._templates: Dict[Tuple[str, str, str], Message] = {}
        self._iso: Dict[str, Optional[str]] = {}

    def __call__(self, fields: Mapping[str, str]) -> Message:
        if list(fields) == FIELDS:
            return self._decode(list(fields.values()), fields)
        return message_from_entry(fields)

    def flat(self, flat: Sequence[str]) -> Message:
        """An entry as ``[field, value, field, value, ...]``."""
        if flat[0::2] == FIELDS:
            return self._decode(flat[1::2], None)
        pairs = iter(flat)
        return message_from_entry(dict(zip(pairs, pairs)))

    def _decode(self, values: Sequence[str], fields: Optional[Mapping[str, str]]) -> Message:
        event = values[_EVENT]
        key = (values[_HOST], values[_NAME], values[_GROUP])
        template = self._templates.get(key)
        if template is None or event == "PROCESS_GROUP_REMOVED":
            message = message_from_entry(fields if fields is not None else dict(zip(FIELDS, values)))
            if template is None and event != "PROCESS_GROUP_REMOVED":
                if len(self._templates) >= 50_000:  # ~60 MB: a fleet larger than that gets no cache
                    self._templates.clear()
                self._templates[key] = message.copy()
            return message
        iso = self._iso
        if len(iso) >= 100_000:
            iso.clear()
        now, start, stop = values[_NOW], values[_START], values[_STOP]
        for value in (now, start, stop):
            if value not in iso:
                iso[value] = iso_utc(_int(value)) if value else None
        expected = values[_EXPECTED]
        seq = values[_SEQ]
        message = template.copy()
        message["event"] = event
        message["statename"] = values[_STATENAME]
        message["state"] = _int(values[_STATE])
        message["pid"] = _int(values[_PID])
        message["exitstatus"] = _int(values[_EXIT])
        message["description"] = values[_DESCRIPTION]
        message["spawnerr"] = values[_SPAWNERR]
        message["now"] = iso[now]
        message["start_time"] = iso[start]
        message["stop_time"] = iso[stop]
        message["from_state"] = values[_FROM] or None
        message["seq"] = int(seq)  # a ValueError, as from message_from_entry
        message["run_id"] = values[_RUN_ID]
        message["resync"] = values[_RESYNC] == "1"
        message["expected"] = None if expected == "" else expected == "1"
        return message


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


# -- the reading connection -----------------------------------------------------------


def _raw(response: Any, **options: Any) -> Any:
    return response


def reading_client(client: redis.Redis, poll: float) -> redis.Redis:
    """A client on the same server as *client* for reading the stream: replies decoded
    (undecodable bytes replaced), a reply deadline, no retries of its own, and XREAD's
    reply left as Redis sends it (:meth:`EntryDecoder.flat` reads it without a dict)."""
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    timeout = poll + REPLY_DEADLINE
    kwargs.update(
        decode_responses=True,
        encoding_errors="replace",
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
        retry_on_timeout=False,
    )
    if "orig_socket_timeout" in kwargs:
        kwargs["orig_socket_timeout"] = timeout
    reader = redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))
    reader.set_response_callback("XREAD", _raw)
    return reader


def _fields(flat: Sequence[str]) -> Dict[str, str]:
    pairs = iter(flat)
    return dict(zip(pairs, pairs))


def _entries(reply: Any, stream: str) -> List[Entry]:
    """The entries of a raw XREAD reply (RESP2: [[stream, entries]]; RESP3: {stream: entries}),
    each ``[id, [field, value, ...]]`` (the list None for a deleted entry)."""
    if not reply:
        return []
    found: Any = reply.get(stream) if isinstance(reply, dict) else next((e for n, e in reply if n == stream), None)
    if not found:
        return []
    return [(entry_id, flat) for entry_id, flat in found]


def stop_test(stop: Optional[threading.Event], should_stop: Optional[Callable[[], bool]]) -> Callable[[], bool]:
    """Whether a consumer loop must end: *stop* is set or *should_stop()* says so."""
    return lambda: (stop is not None and stop.is_set()) or (should_stop is not None and should_stop())


def wait_unless_stopped(
    delay: float, stop: Optional[threading.Event], stopped: Callable[[], bool], poll: float
) -> None:
    """Wait *delay* seconds, or less if told to stop (the consumer loops' backoff)."""
    if stop is not None:
        stop.wait(delay)
        return
    deadline = time.monotonic() + delay
    while not stopped() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, poll))


@dataclass(frozen=True)
class Gap:
    """Entries the reader will never read: trimmed by retention before it got to them,
    or gone with the stream (``reset``: deleted or recreated, e.g. Redis restarted empty)."""

    after: str  # the last entry id read (or the start position) before the gap
    lost: Optional[int]  # entries lost; None when unknown
    resumed_at: Optional[str]  # the first entry kept, when known
    reset: bool = False

    def describe(self) -> str:
        if self.reset:
            return (
                "the history stream was deleted or recreated (Redis restarted empty?): "
                f"whatever it held after entry {self.after} is lost"
            )
        what = "entries" if self.lost is None else f"{self.lost} {'entry' if self.lost == 1 else 'entries'}"
        where = f", resuming at {self.resumed_at}" if self.resumed_at else ""
        return f"{what} after {self.after} lost to retention (trimmed before they were read){where}"


class StreamReader:
    """The consumer loop over the history stream; see the module's docstring.

    ``start``: None reads from the end (what is added from now on); an entry id reads
    the entries after it (``"0-0"``: all of them; :func:`id_before` to include one).

    Its state, readable from any thread: ``connected``, ``connections`` (connections
    made), ``last_id`` (the position: the last entry handled), ``received`` (entries
    handed on), ``unparsed`` (entries skipped), ``gaps`` and ``lost`` (what on_gap was
    told), ``last_error``.
    """

    def __init__(
        self,
        client: redis.Redis,
        stream: str = keys.FLEET_HISTORY,
        *,
        start: Optional[str] = None,
        backoff: Optional[AbstractBackoff] = None,
        count: int = BATCH,
        decode: Optional[Callable[[Mapping[str, str]], Message]] = None,
    ) -> None:
        if start is not None:
            parse_id(start)
        self.client = client
        self.stream = stream
        self.backoff = backoff or EqualJitterBackoff(cap=2.0, base=0.1)
        self.count = count
        self.decode = decode or EntryDecoder()
        self.last_id: Optional[str] = start
        self.connected = False
        self.connections = 0
        self.received = 0
        self.unparsed = 0
        self.gaps = 0
        self.lost = 0
        self.last_error: Optional[str] = None
        self._added: Optional[int] = None  # entries-added as of last_id, when known
        self._known = False  # last_id is a position in the stream as it is now
        self._reported: Optional[bool] = None
        self._on_skip: Callable[[str, Exception], None] = self._log_skip

    def run(
        self,
        on_message: Callable[[Message, str], None],
        *,
        on_connect: Callable[[], None] = _nothing,
        on_gap: Callable[[Gap], None] = _nothing,
        on_state: Callable[[bool], None] = _nothing,
        on_idle: Callable[[], None] = _nothing,
        on_skip: Optional[Callable[[str, Exception], None]] = None,
        should_stop: Optional[Callable[[], bool]] = None,
        stop: Optional[threading.Event] = None,
        poll: float = 0.25,
        on_batch: Optional[Callable[[Sequence[Entry]], int]] = None,
    ) -> None:
        """Follow the stream until *should_stop()* is true or *stop* is set.

        - ``on_message(message, entry_id)``: each entry, in stream order, as a message.
        - ``on_connect()``: connected (again), the position taken, nothing read yet.
        - ``on_gap(gap)``: entries after the position will never be read (retention, or
          the stream reset); called before the entries read after them.
        - ``on_state(connected)``: the connection went up or down (each change once).
        - ``on_idle()``: nothing arrived within *poll* seconds, or a connection attempt
          failed.
        - ``on_skip(entry_id, error)``: an entry that is not raptor's, skipped (default:
          the first one is logged, as a warning of the ``raptor.stream`` logger).
        - ``on_batch(entries)``, instead of ``on_message``: each batch read, as Redis
          sends it (``[(id, [field, value, ...]), ...]``), for a consumer that decodes
          only what it needs; it returns how many entries it took and reports the
          others to :meth:`skip`. When it raises, the batch is read again.

        A Redis error raised by a hook counts as a lost connection; AuthenticationError
        is raised to the caller.
        """

        stopped = stop_test(stop, should_stop)
        self._on_skip = on_skip or self._log_skip
        reader = reading_client(self.client, poll)
        failures = 0
        try:
            while not stopped():
                try:
                    self._position(reader)
                    self.connections += 1
                    on_connect()
                    self.connected = True
                    self._report(True, on_state)
                    failures = 0
                    self._pump(
                        reader, stopped, poll, on_message=on_message, on_gap=on_gap, on_idle=on_idle, on_batch=on_batch
                    )
                except redis.exceptions.AuthenticationError:
                    raise
                except REDIS_DOWN as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self.connected = False
                    self._report(False, on_state)
                    failures += 1
                    reader.connection_pool.disconnect()
                    with contextlib.suppress(*REDIS_DOWN):
                        on_idle()  # a hook that needs Redis fails while it is away: known already
                    wait_unless_stopped(self.backoff.compute(failures), stop, stopped, poll)
        finally:
            self.connected = False
            reader.connection_pool.disconnect()  # its own pool: close() would leave it open

    def _report(self, connected: bool, on_state: Callable[[bool], None]) -> None:
        if self._reported is not connected:
            self._reported = connected
            on_state(connected)

    def skip(self, entry_id: str, error: Exception) -> None:
        """Count an entry that is not raptor's, and tell ``on_skip``."""
        self.unparsed += 1
        self._on_skip(entry_id, error)

    def _log_skip(self, entry_id: str, error: Exception) -> None:
        if self.unparsed == 1:
            log.warning(
                "skipping history entries that are not raptor's (the first: %a, %s: %s)",
                entry_id,
                type(error).__name__,
                error,
            )

    # -- position and checks ---------------------------------------------------------

    def _info(self, reader: redis.Redis) -> Optional[Dict[str, Any]]:
        try:
            info: Dict[str, Any] = reader.xinfo_stream(self.stream)
        except redis.exceptions.ResponseError as exc:
            if "no such key" in str(exc).lower():
                return None
            raise
        return info

    def _position(self, reader: redis.Redis) -> None:
        """At the first connection without a start: the stream's end, and its count."""
        if self.last_id is not None:
            return
        info = self._info(reader)
        if info is None:
            self.last_id, self._added, self._known = START, 0, False
        else:
            self.last_id = str(info["last-generated-id"])
            added = info.get("entries-added")
            self._added = int(added) if added is not None else None
            self._known = True

    def _check(self, info: Any) -> Tuple[Optional[Gap], bool]:
        """Judge the stream as XINFO saw it just before a read from ``last_id``: the gap
        to report, and whether the read must be discarded (the stream was reset)."""
        assert self.last_id is not None
        if isinstance(info, redis.exceptions.ResponseError):
            if "no such key" not in str(info).lower():
                raise info
            info = None
        if self._was_reset(info):
            gap = Gap(self.last_id, None, None, reset=True)
            self.last_id, self._added, self._known = START, 0, False
            return gap, True
        if info is None:
            return None, False
        if parse_id(str(info["last-generated-id"])) >= parse_id(self.last_id):
            self._known = True
        return self._trimmed(info), False

    def _was_reset(self, info: Optional[Dict[str, Any]]) -> bool:
        """The stream the position is in is gone, or another one replaced it."""
        if not self._known:
            return False
        if info is None:
            return True
        assert self.last_id is not None
        added = info.get("entries-added")
        behind = parse_id(str(info["last-generated-id"])) < parse_id(self.last_id)
        return behind or (added is not None and self._added is not None and int(added) < self._added)

    def _trimmed(self, info: Dict[str, Any]) -> Optional[Gap]:
        """Unread entries that retention trimmed: the gap, or None."""
        assert self.last_id is not None
        if info.get("entries-added") is None:
            return None  # Redis < 7: no count to judge by (the seq gaps still tell)
        added, length = int(info["entries-added"]), int(info.get("length") or 0)
        position = parse_id(self.last_id)
        first = info.get("first-entry")
        first_id = str(first[0]) if first else None
        # Retention trims from the head: while an entry up to the position is left,
        # every unread entry is too. Otherwise all `length` entries are unread, and the
        # entries added after the position number `added - self._added`.
        if first_id is not None and parse_id(first_id) <= position:
            return None
        if first_id is None and parse_id(str(info["last-generated-id"])) <= position:
            return None
        lost: Optional[int] = None
        if self._added is not None:
            lost = added - self._added - length
            if lost < 1:
                return None
        elif added <= length:
            return None  # nothing was ever trimmed
        # else: started at an id (--since) and something was trimmed: how much of it unread is unknown
        gap = Gap(self.last_id, lost, first_id)
        self._added = added - length
        if first_id is None:
            self.last_id = str(info["last-generated-id"])
        return gap

    # -- reading -----------------------------------------------------------------------

    def _position_id(self) -> str:
        assert self.last_id is not None
        return self.last_id

    def _checked_read(self, reader: redis.Redis, on_gap: Callable[[Gap], None]) -> Tuple[List[Entry], Any]:
        while True:
            assert self.last_id is not None
            pipe = reader.pipeline(transaction=True)
            pipe.xinfo_stream(self.stream)
            pipe.xread({self.stream: self.last_id}, count=self.count)
            info, reply = pipe.execute(raise_on_error=False)
            if isinstance(reply, Exception):
                raise reply
            gap, discard = self._check(info)
            if gap is not None:
                self.gaps += 1
                self.lost += gap.lost or 0
                on_gap(gap)
            if not discard:
                return _entries(reply, self.stream), info

    def _pump(
        self,
        reader: redis.Redis,
        stopped: Callable[[], bool],
        poll: float,
        *,
        on_message: Callable[[Message, str], None],
        on_gap: Callable[[Gap], None],
        on_idle: Callable[[], None],
        on_batch: Optional[Callable[[Sequence[Entry]], int]],
    ) -> None:
        block = max(1, int(poll * 1000))
        caught_up = False
        while not stopped():
            if caught_up:
                reply = reader.xread({self.stream: self._position_id()}, count=self.count, block=block)
                entries = _entries(reply, self.stream)
                if not entries:
                    on_idle()
                    continue
                self._take(entries, None, on_message, on_batch)
                caught_up = len(entries) < self.count
                continue
            # A batch read and handled without the collector: it makes thousands of
            # short-lived acyclic lists, which the collector would walk again and again
            # with what the consumer keeps (a sixth of a catch-up's time).
            with collector_paused():
                entries, info = self._checked_read(reader, on_gap)
                self._take(entries, info, on_message, on_batch)
            caught_up = len(entries) < self.count
            if caught_up and not entries:
                on_idle()

    def _take(
        self,
        entries: Sequence[Entry],
        info: Any,
        on_message: Callable[[Message, str], None],
        on_batch: Optional[Callable[[Sequence[Entry]], int]],
    ) -> None:
        """Hand *entries* on, then count those now behind the position (all of them,
        unless a hook raised: the rest are read again); *info*: the XINFO read with them."""
        before = self.last_id
        try:
            if on_batch is None:
                self._hand_on(entries, on_message)
            elif entries:
                self.received += on_batch(entries)
                self.last_id = entries[-1][0]
        finally:
            now = self.last_id
            done = 0 if now is None or now == before else 1 + [entry[0] for entry in entries].index(now)
            self._count(entries[:done], info if done == len(entries) else None)

    def _count(self, entries: Sequence[Entry], info: Any) -> None:
        """Keep entries-added as of the position: exact when a checked read (*info*)
        reached the end."""
        if isinstance(info, dict):
            last = str(info["last-generated-id"])
            added = info.get("entries-added")
            end = entries[-1][0] if entries else self.last_id
            if added is not None and end == last:
                self._added = int(added)
                return
        if self._added is not None:
            self._added += len(entries)

    def _hand_on(self, entries: Iterable[Entry], on_message: Callable[[Message, str], None]) -> None:
        decode = self.decode
        flat_decode = decode.flat if isinstance(decode, EntryDecoder) else None
        handled: Optional[str] = None  # the position, kept in a local while the batch runs
        received = 0
        try:
            for entry_id, flat in entries:
                handled = entry_id
                try:
                    if flat is None:
                        raise ValueError("deleted entry")
                    message = flat_decode(flat) if flat_decode is not None else decode(_fields(flat))
                except UNREADABLE as exc:
                    self.last_id = entry_id
                    self.skip(entry_id, exc)
                    continue
                received += 1
                on_message(message, entry_id)
        finally:
            if handled is not None:
                self.last_id = handled
            self.received += received


# -- per-host history ------------------------------------------------------------------


Flat = Sequence[str]  # an entry's [field, value, field, value, ...], as Redis sends it


def history_client(client: redis.Redis, *, raw: bool = False) -> redis.Redis:
    """A client on *client*'s server for reading history ranges: XRANGE's reply left
    flat, so that a query can skip the entries it does not want before making anything
    of them; its values decoded by the parser (hiredis: in C), or with *raw* left bytes
    (a query for one process decodes only its own: a sixth less time)."""
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs.update(decode_responses=not raw, encoding_errors="replace")
    reader = redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))
    reader.set_response_callback("XRANGE", _raw)
    return reader


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for the block. Reading a history makes
    hundreds of thousands of short-lived, acyclic strings and lists: the collector would
    walk them again and again for nothing (a third of a query's time at its p99)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _after(entry_id: Any) -> str:
    """XRANGE's exclusive start after *entry_id* (bytes from a raw client)."""
    return "(" + (entry_id.decode() if isinstance(entry_id, bytes) else entry_id)


def read_range(
    client: redis.Redis, key: str, start: str, count: int = BATCH, end: str = "+"
) -> Iterator[Tuple[str, Flat]]:
    """The entries of *key* from *start* on (to *end*; both inclusive unless written
    ``(ID``), read in batches of *count*; *client* is a :func:`history_client`."""
    low = start
    while True:
        batch: List[Any] = list(client.xrange(key, low, end, count=count) or [])
        for entry_id, flat in batch:
            if flat is not None:
                yield entry_id, flat
        if len(batch) < count:
            return
        low = _after(batch[-1][0])


def read_ranges(
    client: redis.Redis, streams: Mapping[str, str], count: int = BATCH
) -> Dict[str, List[Tuple[str, Flat]]]:
    """For each key of *streams*, its entries from the id given (inclusive) on: one
    pipelined XRANGE per key, then again for the keys whose batch came back full;
    *client* is a :func:`history_client`."""
    found: Dict[str, List[Tuple[str, Flat]]] = {key: [] for key in streams}
    pending = dict(streams)
    while pending:
        pipe = client.pipeline(transaction=False)
        for key, low in pending.items():
            pipe.xrange(key, low, "+", count=count)
        results = pipe.execute()
        following: Dict[str, str] = {}
        for (key, _), batch in zip(pending.items(), results):
            found[key].extend((i, f) for i, f in batch if f is not None)
            if len(batch) >= count:
                following[key] = _after(batch[-1][0])
        pending = following
    return found
