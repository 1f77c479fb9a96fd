"""``proc_publisher``: the eventlistener that supervisord runs.

The event path, :meth:`Listener.handle_event`, parses the event and queues it for
the sink thread. It never touches the network, so acknowledging an event costs
microseconds whatever Redis or supervisord's RPC are doing.
"""

from __future__ import annotations

import io
import logging
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, TextIO, Tuple

from .. import __version__
from ..config import ConfigError, ListenerConfig
from ..keys import (
    META_ACK_MAX_MS,
    META_ACK_P50_MS,
    META_ACK_P99_MS,
    META_ACKS,
    META_COALESCED,
    META_DISCARDED,
    META_EVENTS,
)
from ..logs import Throttle, configure_logging, log_uncaught_exceptions, url_secrets
from .events import EventParseError, GroupChange, ProcessStateChange, Tick, parse_event
from .identity import host_identity
from .outbox import Outbox
from .protocol import Envelope, EventListenerProtocol
from .sink import RedisSink, make_redis_client
from .supervisor_rpc import SupervisorRPC

log = logging.getLogger("raptor.listener")


# A restart makes 4 events per process (RUNNING>STOPPING>STOPPED>STARTING>RUNNING).
# The role sizes buffer_size as 6 per program (that, plus a half), rounded up to a
# multiple of 1024 so that a few programs more or less do not restart the listener.
EVENTS_PER_PROGRAM = 6
BUFFER_STEP = 1024
# A loss of events is over (and summed up in the log) at the first event that comes
# this long after the last gap: longer than a program's startsecs, so the stop and
# the start waves of one `restart all` count as one loss.
LOSS_QUIET = 5.0


def buffer_size_for(processes: int) -> int:
    """The buffer_size the role installs for *processes* (proc_publisher_buffer_size: 0):
    a `restart all` with a margin. roles/proc_publisher/vars/main.yml has the same rule."""
    return max(BUFFER_STEP, math.ceil(processes * EVENTS_PER_PROGRAM / BUFFER_STEP) * BUFFER_STEP)


@dataclass
class _Loss:
    """Events supervisord discarded in one burst, as poolserial gaps showed them."""

    first: int  # poolserial of the first event lost
    last: int  # poolserial of the last event lost
    lost: int
    since_gap: int  # events received from the last gap on
    last_gap_at: float
    started_at: float


def loss_summary(loss: _Loss, processes: Optional[int]) -> str:
    """One line: how many events were lost and which buffer_size would have held them.

    Every event that supervisord still held at its last discard was delivered after
    the last gap, so ``since_gap`` >= the buffer size in force, and no backlog of the
    burst exceeded that plus what was discarded."""
    held = loss.since_gap + loss.lost
    text = (
        f"supervisord discarded {loss.lost} events in all over {loss.last_gap_at - loss.started_at:.1f} s "
        f"(poolserial {loss.first} to {loss.last}): a buffer_size of at least {held} would have held them "
        f"({loss.since_gap} events delivered after the last loss, which include all it still buffered, "
        f"+ {loss.lost} discarded)"
    )
    if processes:
        text += f"; the role's rule for {processes} processes gives {buffer_size_for(processes)}"
    return text


class Listener:
    """Turns each event into work for the sink. Runs on the event path: no I/O."""

    def __init__(
        self,
        outbox: Outbox,
        clock: Callable[[], float] = time.time,
        processes: Optional[Callable[[], Optional[int]]] = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outbox = outbox
        self._clock = clock
        # How many processes supervisord runs, as last seen off the event path.
        self._processes = processes or (lambda: None)
        self._monotonic = monotonic
        self._last_poolserial: Optional[int] = None
        self._loss: Optional[_Loss] = None
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
        now = self._monotonic()
        loss = self._loss
        if loss is not None and now - loss.last_gap_at >= LOSS_QUIET:
            self._throttle.log("discarded-summary", logging.WARNING, "%s", loss_summary(loss, self._processes()))
            loss = self._loss = None
        last = self._last_poolserial
        if last is not None and serial > last + 1:
            lost = serial - last - 1
            self.discarded_by_supervisord += lost
            if loss is None:
                loss = self._loss = _Loss(last + 1, serial - 1, 0, 0, now, now)
            loss.last, loss.last_gap_at, loss.since_gap = serial - 1, now, 0
            loss.lost += lost
            self._log_gap(last, serial, lost)
            self._outbox.request_resync("events discarded by supervisord")
        if loss is not None:
            loss.since_gap += 1
        if last is None or serial > last:
            self._last_poolserial = serial

    def _log_gap(self, last: int, serial: int, lost: int) -> None:
        processes = self._processes()
        if processes:
            advice = (
                f"set buffer_size to at least {buffer_size_for(processes)} (the role's rule for {processes} "
                f"processes, applied with proc_publisher_buffer_size: 0)"
            )
        else:
            advice = f"raise buffer_size by at least {lost}"
        self._throttle.log(
            "discarded",
            logging.WARNING,
            "supervisord discarded %d events (poolserial %d to %d) before this listener saw them: its "
            "buffer_size is too small for this burst; %s; resyncing (the total follows with the first event "
            "after %.0f s without loss)",
            lost,
            last + 1,
            serial - 1,
            advice,
            LOSS_QUIET,
        )


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
            return {META_ACKS: count}

        def pct(p: float) -> str:
            return f"{samples[min(len(samples) - 1, int(p * len(samples)))] * 1000:.4f}"

        return {META_ACKS: count, META_ACK_P50_MS: pct(0.50), META_ACK_P99_MS: pct(0.99), META_ACK_MAX_MS: pct(1.0)}


def _secrets(config: ListenerConfig) -> Tuple[List[str], List[Tuple[str, str]]]:
    """What the log must never show: passwords as given and as their URLs spell
    them, and the supervisor credentials that make up its Basic auth header."""
    secrets = [config.supervisor_password]
    credentials = [(config.supervisor_username, config.supervisor_password)]
    for url in (config.redis_url, config.supervisor_url or ""):
        found, pair = url_secrets(url)
        secrets += found
        credentials += pair
    return secrets, credentials


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
    configure_logging(stderr, config.log_level, *_secrets(config))

    rpc = None
    if config.supervisor_url:
        rpc = SupervisorRPC(config.supervisor_url, config.supervisor_username, config.supervisor_password)
    else:
        log.warning(
            "SUPERVISOR_SERVER_URL is not set: publishing from events only; processes that never change "
            "state will not appear until they do (add a [unix_http_server] to supervisord.conf)"
        )
    outbox = Outbox()
    # The count the sink's last getAllProcessInfo() saw: an attribute read, no I/O.
    listener = Listener(outbox, processes=None if rpc is None else lambda: rpc.last_process_count)
    acks = AckStats()

    def meta() -> Dict[str, Any]:
        extra = acks.summary()
        extra[META_EVENTS] = listener.events
        extra[META_DISCARDED] = listener.discarded_by_supervisord
        extra[META_COALESCED] = outbox.coalesced
        extra.update(host_identity())  # which supervisord this is: decides duplicate names
        return extra

    protocol = EventListenerProtocol(stdin, stdout)
    sink = RedisSink(config, outbox, make_redis_client(config), rpc, meta=meta, input_at_rest=protocol.at_rest)
    log.info(
        "raptor %s publishing host %r to %s channel %r (run %s)",
        __version__,
        config.hostname,
        config.redacted_redis_url,
        config.channel,
        sink.run_id,
    )
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


def main(argv: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if os.environ.get("SUPERVISOR_ENABLED") != "1":
        # Run by hand: --help and --version answer on stdout. Under supervisord stdout is
        # the protocol, so arguments are not read there (as before).
        import argparse  # noqa: PLC0415  (only a command line run by hand needs it)

        parser = argparse.ArgumentParser(
            prog="proc_publisher",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            description="Supervisor eventlistener: publishes every process state change to Redis. "
            "supervisord starts it from an [eventlistener:proc_publisher] section; it speaks the "
            "eventlistener protocol on stdin/stdout and logs to stderr.",
            epilog="""configured by the environment:
  REDIS_URL              required: redis://[[user]:password@]host[:port][/db], rediss://..., unix:///path.sock?db=0
  HOSTNAME               the name to publish under (default: the FQDN)
  RAPTOR_CHANNEL         pub/sub channel (default: proc_events)
  RAPTOR_SNAPSHOT_TTL    seconds the snapshot lives after its last refresh (default: 600, at least 120)
  RAPTOR_LOG_LEVEL       DEBUG, INFO (default), WARNING or ERROR
  SUPERVISOR_SERVER_URL  set by supervisord; SUPERVISOR_USERNAME, SUPERVISOR_PASSWORD: its credentials""",
        )
        parser.add_argument("--version", action="version", version=f"proc_publisher (raptor) {__version__}")
        parser.parse_args(args)  # exits after --help, --version or a wrong argument
    # stdout belongs to the protocol: anything else printed by accident goes to stderr.
    protocol_out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n", write_through=True)
    sys.stdout = sys.stderr
    log_uncaught_exceptions(log)
    # supervisord sends UTF-8 and counts payload length in characters; no newline
    # translation, or a '\r' in a payload would change the count.
    protocol_in = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline="\n")
    try:
        code = run(protocol_in, protocol_out, sys.stderr, dict(os.environ), handle_sigterm=True)
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)
