"""One reader of the history stream for every browser: the live feed of ``raptor web``.

A :class:`Hub` runs one :class:`~raptor.consumer.stream.StreamReader` over
``proc_history`` in a thread, from the stream's end at start. Each entry is decoded and
made JSON once, and kept in memory (the last :data:`KEEP` entries) in stream order:
every page's server-sent-event stream is served from there, so a hundred pages cost one
reader, not a hundred. A page that asks for entries the hub never read (it reconnects
to a server that restarted, or was away longer than the hub keeps) is caught up from
Redis first (:func:`catch_up`), then joins the hub.

What a page is told, in the order of the stream:

- ``Batch(last_id, items)``: the entries after its position, up to ``last_id``.
- ``Reset(position)``: what it holds may be wrong and cannot be repaired entry by
  entry (retention trimmed entries it had not seen, or the stream was deleted or
  recreated): it reloads the fleet (``/api/fleet``) and follows on from that load.

The hub's coverage is the window ``(floor, last]``: every entry after ``floor`` that
the stream ever held is in memory. ``floor`` is the position the reader started at,
then the id of the last entry evicted. A gap seen by the reader (see
:class:`~raptor.consumer.stream.Gap`) empties the window and moves its floor to the
reader's new position, and every page is told ``Reset``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import redis

from .. import keys
from ..consumer.stream import (
    REDIS_DOWN,
    UNREADABLE,
    Entry,
    EntryDecoder,
    Gap,
    StreamReader,
    history_client,
    parse_id,
)

log = logging.getLogger("raptor.web")

KEEP = 50_000  # entries kept in memory, ~1 KB each (JSON ~750 B, ids): 25 s of a 2,000/s burst, ~50 MB
BATCH = 500  # entries per server-sent event at most
SHARED = 64  # batches remembered for the next page that asks for the same entries
Id = Tuple[int, int]


@dataclass(frozen=True)
class Batch:
    last_id: str
    items: Sequence[str]  # each entry's message, as JSON text
    # What the server made of it once (its server-sent event), for every page sent the
    # same batch: pages at the live edge ask for the same entries in the same tick.
    encoded: Dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Reset:
    position: str
    why: str


Update = Union[Batch, Reset]


def encode(message: Any) -> str:
    # Compact, and every non-ASCII character escaped: the text goes into an SSE data
    # line as it is, so it must hold no line break (json.dumps escapes those anyway).
    return json.dumps(message, separators=(",", ":"))


class Hub:
    """The shared live feed; see the module's docstring. ``start()`` from the event
    loop that will serve the pages; ``stop()`` at shutdown.

    Readable from the loop: ``connected`` (the reader is), ``generation`` (counts the
    resets), ``floor`` and ``last`` (the window), ``last_error``.
    """

    def __init__(self, client: redis.Redis, *, keep: int = KEEP, stream: str = keys.FLEET_HISTORY) -> None:
        self.client = client
        self.stream = stream
        self.keep = keep
        self.generation = 0
        self.floor: Optional[str] = None  # None until the reader has a position
        self.connected = False
        self.last_error: Optional[str] = None
        self._ids: List[Id] = []
        self._id_text: List[str] = []
        self._items: List[str] = []
        self._signal: Optional[asyncio.Event] = None  # made in start(): Python 3.9 binds it to a loop
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._reader = StreamReader(client, stream)
        self._decode = EntryDecoder()
        self._batches: Dict[Tuple[int, int], Batch] = {}  # by (first, end) index in the window

    # -- the reader's thread ----------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._signal = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="raptor-web-hub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        try:
            self._reader.run(
                lambda message, entry_id: None,
                on_batch=self._on_batch,
                on_connect=self._on_connect,
                on_gap=self._on_gap,
                on_state=self._on_state,
                stop=self._stop,
            )
        except Exception:  # a hub that died would freeze every page: say it loudly
            log.exception("the history reader stopped")
            self._call(self._set_state, False, "the history reader stopped: see the server's log")

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
            self._loop.call_soon_threadsafe(function, *args)

    def _on_connect(self) -> None:
        position = self._reader.last_id
        assert position is not None
        self._call(self._set_floor, position)

    def _on_state(self, connected: bool) -> None:
        self._call(self._set_state, connected, self._reader.last_error)

    def _on_gap(self, gap: Gap) -> None:
        position = self._reader.last_id
        assert position is not None
        self._call(self._reset, position, gap.describe())

    def _on_batch(self, entries: Sequence[Entry]) -> int:
        ids, texts, items = [], [], []
        taken = 0
        for entry_id, flat in entries:
            try:
                if flat is None:
                    raise ValueError("deleted entry")
                message = self._decode.flat(flat)
            except UNREADABLE as exc:
                self._reader.skip(entry_id, exc)
                items.append("")  # kept as a place: the position moves past it
            else:
                taken += 1
                message["entry_id"] = entry_id
                items.append(encode(message))
            ids.append(parse_id(entry_id))
            texts.append(entry_id)
        self._call(self._append, ids, texts, items)
        return taken

    # -- the loop's side ----------------------------------------------------------------

    def _wake(self) -> None:
        signal, self._signal = self._signal, asyncio.Event()
        if signal is not None:
            signal.set()

    def _set_floor(self, position: str) -> None:
        if self.floor is None:
            self.floor = position
            self._wake()

    def _set_state(self, connected: bool, error: Optional[str]) -> None:
        self.connected = connected
        self.last_error = None if connected else error
        self._wake()

    def _reset(self, position: str, why: str) -> None:
        log.warning("history stream: %s; every page reloads", why)
        self.generation += 1
        self.floor = position
        self._ids, self._id_text, self._items = [], [], []
        self._batches.clear()
        self._why = why
        self._wake()

    def _append(self, ids: List[Id], texts: List[str], items: List[str]) -> None:
        self._ids.extend(ids)
        self._id_text.extend(texts)
        self._items.extend(items)
        excess = len(self._ids) - self.keep
        if excess > self.keep // 4:  # evict in chunks: deleting a list's head is O(n)
            self.floor = self._id_text[excess - 1]
            del self._ids[:excess], self._id_text[:excess], self._items[:excess]
            self._batches.clear()  # their indexes moved
        self._wake()

    @property
    def last(self) -> Optional[str]:
        return self._id_text[-1] if self._id_text else self.floor

    def covers(self, position: str) -> bool:
        """Whether every entry after *position* is (or will be) here."""
        return self.floor is not None and parse_id(position) >= parse_id(self.floor)

    def after(self, position: str, limit: int = BATCH) -> Optional[Batch]:
        """The entries after *position* (which the hub covers), or None when none are here yet."""
        start = bisect.bisect_right(self._ids, parse_id(position))
        if start >= len(self._ids):
            return None
        end = min(len(self._ids), start + limit)
        batch = self._batches.get((start, end))
        if batch is None:
            if len(self._batches) >= SHARED:
                self._batches.clear()
            batch = Batch(self._id_text[end - 1], [item for item in self._items[start:end] if item])
            self._batches[(start, end)] = batch
        return batch

    async def changed(self, timeout: float) -> None:
        """Return when something arrives (or the state changes), or after *timeout* s."""
        assert self._signal is not None, "Hub.start() first"
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._signal.wait(), timeout)

    def why(self) -> str:
        return getattr(self, "_why", "the history stream was reset")


def catch_up(client: redis.Redis, stream: str, position: str, limit: int = BATCH) -> Update:
    """The entries after *position* read from Redis (for a page behind the hub), or
    :class:`Reset` when some of them are gone. Conservative: when the stream's first
    entry is past *position*, whatever lay between is trimmed and may have held
    entries the page never saw, so it reloads."""
    reader = history_client(client)
    pipe = reader.pipeline(transaction=True)
    pipe.xinfo_stream(stream)
    pipe.xrange(stream, "(" + position, "+", count=limit)
    info, reply = pipe.execute(raise_on_error=False)
    if isinstance(info, redis.exceptions.ResponseError):
        if "no such key" in str(info).lower():
            return Reset("0-0", "the history stream is gone (Redis restarted empty?)")
        raise info
    if isinstance(reply, Exception):
        raise reply
    mark = parse_id(position)
    last = str(info["last-generated-id"])
    if parse_id(last) < mark:
        return Reset(last, "the history stream was recreated (Redis restarted empty?)")
    first = info.get("first-entry")
    if mark != (0, 0) and first and parse_id(str(first[0])) > mark:
        return Reset(last, f"entries after {position} were trimmed by retention before this page saw them")
    decode = EntryDecoder()
    items = []
    last_read = position
    for entry_id, flat in reply or []:
        last_read = entry_id
        if flat is None:
            continue
        try:
            message = decode.flat(flat)
        except UNREADABLE:
            continue
        message["entry_id"] = entry_id
        items.append(encode(message))
    return Batch(last_read, items)


__all__ = ["BATCH", "KEEP", "REDIS_DOWN", "Batch", "Hub", "Reset", "Update", "catch_up", "encode"]
