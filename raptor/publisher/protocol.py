"""Supervisor's eventlistener protocol: framing only, no knowledge of events.

supervisord writes a header line of ``key:value`` tokens, then ``len`` characters of
payload (characters, not bytes: Python-3 supervisord counts the decoded string).
The listener answers ``RESULT 2\\nOK`` and says ``READY\\n`` for the next one.
Anything else on stdout puts the listener in UNKNOWN state, where supervisord
silently stops sending it events: stdout carries nothing but these tokens.
"""

from __future__ import annotations

import logging
import select
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, TextIO

log = logging.getLogger("raptor.protocol")

READY = "READY\n"
OK = "RESULT 2\nOK"
REQUIRED_HEADERS = ("eventname", "len")


class ProtocolError(ValueError):
    """A header line that is not supervisord's."""


@dataclass(frozen=True)
class Envelope:
    """One event as supervisord framed it."""

    headers: Dict[str, str]
    payload: str

    @property
    def eventname(self) -> str:
        return self.headers["eventname"]

    @property
    def poolserial(self) -> Optional[int]:
        raw = self.headers.get("poolserial", "")
        return int(raw) if _is_number(raw) else None


def _input_waiting(stream: TextIO) -> bool:
    """Whether bytes wait on *stream* (a pipe); False for one without a descriptor."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    try:
        readable, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(readable)


def _is_number(value: str) -> bool:
    # str.isdigit() alone accepts '²', which int() rejects.
    return value.isascii() and value.isdigit()


def parse_header(line: str) -> Dict[str, str]:
    """Parse ``ver:3.0 server:supervisor ... len:54`` into a dict."""
    headers: Dict[str, str] = {}
    for token in line.split():
        key, sep, value = token.partition(":")
        if not sep or not key:
            raise ProtocolError(f"header token without ':': {token[:80]!r}")
        headers[key] = value
    missing = [name for name in REQUIRED_HEADERS if name not in headers]
    if missing:
        raise ProtocolError(f"header without {', '.join(missing)}: {line[:200]!r}")
    if not _is_number(headers["len"]):
        raise ProtocolError(f"header len is not a number: {headers['len'][:40]!r}")
    return headers


def announced_length(line: str) -> Optional[int]:
    """The payload length a header line announces, even if the line is otherwise
    malformed: that many characters belong to this frame and must be consumed, or
    each line of the payload would be taken for a header and answered."""
    length = None
    for token in line.split():
        key, sep, value = token.partition(":")
        if key == "len" and sep:
            length = int(value) if _is_number(value) else None  # the last one wins, as in parse_header
    return length


Handler = Callable[[Envelope], None]
AckObserver = Callable[[float], None]


class EventListenerProtocol:
    """Reads events from *stdin* and acknowledges them on *stdout*.

    Both streams are text streams (:func:`raptor.publisher.listener.main` makes them), passed in so
    that the protocol can be driven by a test without any global state.
    """

    def __init__(self, stdin: TextIO, stdout: TextIO) -> None:
        self._stdin = stdin
        self._stdout = stdout
        # True while blocked waiting for the next header: the only moment at which
        # stopping loses nothing (see the SIGTERM handler in listener.run).
        self.idle = False
        self.stop_requested = False
        self.headers_read = 0

    def at_rest(self) -> Optional[int]:
        """How many headers were read, if the reader is blocked waiting for the next
        one and no byte of it is waiting on stdin; else None. For the sink thread:
        ``supervisord`` answers an RPC in the loop turn that also hands this listener
        its next buffered event, so at rest after a few RPCs means it held none."""
        count = self.headers_read
        if not self.idle or _input_waiting(self._stdin) or self.headers_read != count:
            return None
        return count

    def _write(self, text: str) -> None:
        self._stdout.write(text)
        self._stdout.flush()

    def read(self) -> Optional[Envelope]:
        """Return the next event, or None at end of input.

        Raises :class:`ProtocolError` for a header that cannot be framed.
        """
        self.idle = True
        try:
            line = self._stdin.readline()
        finally:
            self.idle = False
            self.headers_read += 1
        if not line:
            return None
        try:
            headers = parse_header(line)
        except ProtocolError as exc:
            length = announced_length(line)
            if length is None:
                raise
            # Skip the frame whole, then report it once.
            if self._read_payload(length) is None:
                return None
            raise ProtocolError(f"{exc} (its {length}-character payload skipped)") from None
        payload = self._read_payload(int(headers["len"]))
        return None if payload is None else Envelope(headers, payload)

    def _read_payload(self, length: int) -> Optional[str]:
        """*length* characters, or None at end of input."""
        chunks = []
        remaining = length
        while remaining:
            chunk = self._stdin.read(remaining)
            if not chunk:
                return None
            chunks.append(chunk)
            remaining -= len(chunk)
        return "".join(chunks)

    def serve(self, handler: Handler, on_ack: Optional[AckObserver] = None) -> None:
        """READY, read, handle, OK; until supervisord closes stdin.

        The answer is always OK: a FAIL makes supervisord re-send the same event at
        once, which would block the pool on an event we cannot handle anyway.
        *on_ack*, if given, receives the seconds from event read to OK written.
        """
        self._write(READY)
        while True:
            try:
                envelope = self.read()
            except ProtocolError as exc:
                log.error("ignoring input that is not a supervisord event header: %s", exc)
                self._write(OK + READY)
                continue
            if envelope is None:
                return
            started = time.perf_counter()
            try:
                handler(envelope)
            except Exception:  # the listener must outlive any bad event
                log.exception("failed to handle %s event; acknowledged anyway", envelope.eventname)
            # One write for both tokens: one syscall, one supervisord loop turn.
            if self.stop_requested:
                self._write(OK)
                return
            self._write(OK + READY)
            if on_ack is not None:
                on_ack(time.perf_counter() - started)
