"""``proc_publisher``: the eventlistener that supervisord runs.

The event path, :meth:`Listener.handle_event`, parses the event and queues it for
the sink thread. It never touches the network, so acknowledging an event costs
microseconds whatever Redis or supervisord's RPC are doing.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Mapping, Optional, TextIO
from urllib.parse import unquote, urlsplit

from . import __version__
from .config import ConfigError, ListenerConfig
from .events import EventParseError, GroupChange, ProcessStateChange, Tick, parse_event
from .logs import Throttle, configure_logging
from .outbox import Outbox
from .protocol import Envelope, EventListenerProtocol
from .redis_sink import RedisSink, make_redis_client
from .supervisor_rpc import SupervisorRPC

log = logging.getLogger("raptor.listener")


class Listener:
    """Turns each event into work for the sink. Runs on the event path: no I/O."""

    def __init__(self, outbox: Outbox, clock: Callable[[], float] = time.time) -> None:
        self._outbox = outbox
        self._clock = clock
        self._last_poolserial: Optional[int] = None
        self._throttle = Throttle(log)
        self.events = 0
        self.discarded_by_supervisord = 0

    def handle_event(self, envelope: Envelope) -> None:
        self.events += 1
        self._check_poolserial(envelope)
        try:
            event = parse_event(envelope.eventname, envelope.payload, self._clock())
        except EventParseError as exc:
            self._throttle.log("parse", logging.WARNING, "ignoring malformed event: %s", exc)
            return
        if isinstance(event, (ProcessStateChange, GroupChange)):
            self._outbox.put(event)
        elif isinstance(event, Tick):
            self._outbox.request_resync(event.eventname)

    def _check_poolserial(self, envelope: Envelope) -> None:
        # supervisord numbers events per pool as it buffers them; a gap means it
        # discarded the oldest ones because the buffer was full.
        serial = envelope.poolserial
        if serial is None:
            return
        last = self._last_poolserial
        if last is not None and serial > last + 1:
            lost = serial - last - 1
            self.discarded_by_supervisord += lost
            self._throttle.log(
                "discarded",
                logging.WARNING,
                "supervisord discarded %d events before this listener saw them (raise buffer_size); resyncing",
                lost,
            )
            self._outbox.request_resync("events discarded by supervisord")
        if last is None or serial > last:
            self._last_poolserial = serial


class AckStats:
    """Recent ack latencies (event read to OK written), for the host's meta record."""

    def __init__(self, size: int = 4096) -> None:
        self._samples: Deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.count = 0

    def record(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(seconds)
            self.count += 1

    def summary(self) -> Dict[str, Any]:
        with self._lock:
            samples = sorted(self._samples)
            count = self.count
        if not samples:
            return {"acks": count}

        def pct(p: float) -> str:
            return f"{samples[min(len(samples) - 1, int(p * len(samples)))] * 1000:.4f}"

        return {"acks": count, "ack_p50_ms": pct(0.50), "ack_p99_ms": pct(0.99), "ack_max_ms": pct(1.0)}


class _Stop(BaseException):
    """Raised by the SIGTERM handler to leave the blocking read cleanly."""


def run(
    stdin: TextIO, stdout: TextIO, stderr: TextIO, environ: Mapping[str, str], *, handle_sigterm: bool = False
) -> int:
    """Run the listener on the given streams until supervisord closes stdin.

    With *handle_sigterm* (the console script), SIGTERM stops it cleanly: the event
    in hand is acknowledged and what is queued is published before exiting.
    """
    try:
        config = ListenerConfig.from_env(environ)
    except ConfigError as exc:
        stderr.write(f"proc_publisher: {exc}\n")
        stderr.flush()
        return 2
    secrets = [config.supervisor_password]
    password = urlsplit(config.redis_url).password
    if password:
        secrets += [password, unquote(password)]
    configure_logging(stderr, config.log_level, secrets)

    rpc = None
    if config.supervisor_url:
        rpc = SupervisorRPC(config.supervisor_url, config.supervisor_username, config.supervisor_password)
    else:
        log.warning(
            "SUPERVISOR_SERVER_URL is not set: publishing from events only; processes that never change "
            "state will not appear until they do (add a [unix_http_server] to supervisord.conf)"
        )
    outbox = Outbox()
    listener = Listener(outbox)
    acks = AckStats()

    def meta() -> Dict[str, Any]:
        extra = acks.summary()
        extra["events"] = listener.events
        extra["discarded_by_supervisord"] = listener.discarded_by_supervisord
        extra["coalesced"] = outbox.coalesced
        return extra

    sink = RedisSink(config, outbox, make_redis_client(config), rpc, meta=meta)
    log.info(
        "raptor %s publishing host %r to %s channel %r (run %s)",
        __version__,
        config.hostname,
        config.redacted_redis_url,
        config.channel,
        sink.run_id,
    )
    protocol = EventListenerProtocol(stdin, stdout)
    if handle_sigterm:

        def on_sigterm(signum: int, frame: object) -> None:
            if protocol.idle:
                raise _Stop()  # nothing in hand: leave the blocking read now
            protocol.stop_requested = True  # finish and acknowledge the event in hand first

        signal.signal(signal.SIGTERM, on_sigterm)
    sink.start()
    try:
        protocol.serve(listener.handle_event, on_ack=acks.record)
    except _Stop:
        pass
    finally:
        sink.stop(timeout=2.0)
        log.info("stopped after %d events; %d messages published", listener.events, sink.published)
    return 0


def main() -> None:
    # stdout belongs to the protocol: anything else printed by accident goes to stderr.
    protocol_out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n", write_through=True)
    sys.stdout = sys.stderr
    # supervisord sends UTF-8 and counts payload length in characters; no newline
    # translation, or a '\r' in a payload would change the count.
    protocol_in = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline="\n")
    try:
        code = run(protocol_in, protocol_out, sys.stderr, dict(os.environ), handle_sigterm=True)
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)
